"""The claims table (qfm_iqm.evaluation.claims): effects, tests and verdicts on per-split results whose truth is
known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qfm_iqm.evaluation import claims, evaluate

STUDENT = {"arch": {"head": "mlp"}, "train": {"loss": "smooth_l1"}, "matching": {"noise_form": "mix", "eps": 0.3, "adv_weight": 1.0,
                                                 "sens_weight": 0.5, "sens_target": "symmetric"}}


def test_verdicts_follow_the_direction_the_size_and_the_power() -> None:
    assert claims.verdict(0.02, 0.01, 0.01, 0.016, +1) == "supported"
    assert claims.verdict(-0.02, 0.01, 0.01, 0.016, +1) == "not supported"  # significant, the wrong way
    assert claims.verdict(0.001, 0.6, 0.010, 0.016, +1) == "not supported"  # could have seen 0.016, did not
    assert claims.verdict(0.001, 0.6, 0.030, 0.016, +1) == "inconclusive"  # could not have seen 0.016
    assert claims.verdict(0.001, 0.6, 0.010, None, +1) == "inconclusive"  # no size claimed
    assert claims.verdict(-0.05, 0.01, 0.01, None, -1) == "supported"
    assert claims.verdict(np.nan, np.nan, np.nan, None, +1) == "not run"


def _run(splits: int = 30) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-split metrics, sensitivity and predictions where full beats the baseline by 0.03 SRCC on every split
    and moves less under semantic noise, and the gate changes nothing."""
    rng = np.random.default_rng(0)
    base = 0.80 + rng.normal(0, 0.02, splits)
    srcc = {"ridge": base - 0.01, "teacher": base, "baseline": base, "full": base + 0.03 + rng.normal(0, 0.005, splits),
            "gate": base + rng.normal(0, 0.005, splits)}
    metrics = pd.concat([pd.DataFrame({"model": m, "split": range(splits), "srcc": v, "plcc": v, "krcc": v, "rmse": 0.1})
                         for m, v in srcc.items()], ignore_index=True)
    shift = {"baseline": 0.22, "full": 0.19, "gate": 0.22, "teacher": 0.2}
    sensitivity = pd.concat([pd.DataFrame({"model": m, "split": range(splits), "relative_shift": v
                                           + rng.normal(0, 0.005, splits)}) for m, v in shift.items()])
    rows = []
    for split in range(splits):
        score = rng.uniform(size=40)
        far = np.arange(40) % 2 == 1  # the far half: full reads it right, the baseline does not
        rows.append(pd.DataFrame({"split": split, "image_id": [f"{split}_{i}" for i in range(40)], "score": score,
                                  "content_distance": far + rng.uniform(0, 0.1, 40),
                                  "full": score + rng.normal(0, 0.05, 40),
                                  "baseline": np.where(far, rng.uniform(size=40), score)}))
    return metrics, sensitivity, pd.concat(rows, ignore_index=True)


@pytest.mark.slow  # the synthetic row trains 6 small models
def test_the_claims_table_finds_the_effects_that_are_there_and_not_those_that_are_not() -> None:
    metrics, sensitivity, predictions = _run()
    summary = evaluate.summarise(metrics, "baseline", 0.2, family=["full", "gate"], resamples=200)
    table = claims.claims_table(metrics, sensitivity, predictions, summary, "baseline", 0.2, 0.016, STUDENT, 3)
    rows = table.set_index("claim")
    assert list(table.columns) == claims.COLUMNS and len(table) == 8
    accuracy = rows.loc["1. accuracy: full beats its base"]
    assert accuracy["effect"] == pytest.approx(0.03, abs=0.003) and accuracy["verdict"] == "supported"
    assert accuracy["ci_low"] < 0.03 < accuracy["ci_high"] and accuracy["p"] < 0.05 and accuracy["splits"] == 30
    assert accuracy["p_holm"] == pytest.approx(summary.set_index("model").loc["full", "srcc_p_holm_vs_baseline"])
    assert rows.loc["2. lower sensitivity to semantic noise", "effect"] == pytest.approx(-0.03, abs=0.005)
    assert rows.loc["2. lower sensitivity to semantic noise", "verdict"] == "supported"
    assert rows.loc["3. robustness to semantic confounders (test images far in content)", "verdict"] == "supported"
    synthetic = rows.loc["3. robustness to semantic confounders (synthetic, truth known)"]
    assert synthetic["splits"] == 3 and synthetic["ci_low"] <= synthetic["effect"] <= synthetic["ci_high"]
    assert rows.loc["4. cross-dataset generalisation", "verdict"] == "not run"
    assert rows.loc["5. each component contributes: gate", "verdict"] in {"inconclusive", "not supported"}
    assert rows.loc["5. each component contributes: matching", "verdict"] == "not run"  # not trained in this run
    markdown = claims.to_markdown(table, "t")
    assert "| 1. accuracy: full beats its base | full - baseline | SRCC | 30 | +0.03" in markdown
    assert "**supported**" in markdown and "**not run**" in markdown


def test_headline_lists_the_models_of_the_run_in_order() -> None:
    metrics, _, _ = _run(6)
    summary = evaluate.summarise(metrics, "baseline", 0.2, resamples=200)
    table = claims.headline(summary, ["ridge", "teacher", "baseline", "full", "finetune"])
    assert table["model"].tolist() == ["ridge", "teacher", "baseline", "full"] and (table["splits"] == 6).all()
    assert table["SRCC mean [95% CI]"].str.match(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]").all()
