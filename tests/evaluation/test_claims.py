"""The claims table (qfm_iqm.evaluation.claims): effects, tests and verdicts on per-split results whose truth is
known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qfm_iqm.evaluation import claims, evaluate

STUDENT = {"arch": {"head": "mlp"}, "train": {"loss": "smooth_l1"},
           "matching": {"noise_form": "mix", "eps": 0.3, "adv_weight": 1.0, "sens_weight": 0.5, "sens_target": "symmetric"}}
FROZEN = claims.Block("frozen", "full", "baseline", "mlp", "frozen features")
FINETUNED = claims.Block("fine-tuned", "finetune", "finetune_baseline", "decoder", "fine-tuned", fine_tuned=True)
ACCURACY = "1. accuracy: full beats its base"
PAPER_PROBE, TRAINING_PROBE = (f"2. lower sensitivity to semantic noise ({name})" for name in claims.PROBES.values())
FAR = "3. robustness to semantic confounders (test images far in content)"


def test_the_issues_rows_read_inconclusive_and_supported() -> None:
    """Issue 32's two synthetic rows (10 splits, claimed +0.016): the CI holds the claimed size; significant in the
    claimed direction (its Holm p 0.116 is not claim 1's: the primary test takes no correction)."""
    assert claims.verdict(0.010, 0.077, -0.0013, 0.0213, 0.016, +1) == "inconclusive"
    assert claims.verdict(0.013, 0.029, 0.0017, 0.0243, 0.016, +1) == "supported"


def test_verdicts_follow_the_direction_the_claimed_size_and_the_ci() -> None:
    assert claims.verdict(-0.02, 0.01, -0.03, -0.01, 0.016, +1) == "not supported"  # significant, the wrong way
    assert claims.verdict(0.002, 0.6, -0.004, 0.008, 0.016, +1) == "not supported"  # the CI stops short of 0.016
    assert claims.verdict(0.002, 0.6, -0.004, 0.016, 0.016, +1) == "inconclusive"  # ... reaches it
    assert claims.verdict(0.002, 0.6, -0.004, 0.008, None, +1) == "inconclusive"  # no size claimed
    assert claims.verdict(0.002, 0.6, -0.004, 0.008, np.nan, +1) == "inconclusive"  # ... as read from a CSV
    assert claims.verdict(-0.05, 0.01, -0.08, -0.02, None, -1) == "supported"
    assert claims.verdict(0.05, 0.01, 0.02, 0.08, None, -1) == "not supported"
    # a claimed decrease of 0.02: the CI's lower bound is the claimed side
    assert claims.verdict(-0.005, 0.3, -0.012, 0.002, 0.02, -1) == "not supported"
    assert claims.verdict(-0.005, 0.3, -0.025, 0.002, 0.02, -1) == "inconclusive"
    assert claims.verdict(0.01, 0.04, 0.001, 0.02, None, +1, alpha=0.0167) == "inconclusive"  # the level used
    assert claims.verdict(0.01, np.nan, np.nan, np.nan, 0.016, +1) == "inconclusive"  # one split: no test
    assert claims.verdict(np.nan, np.nan, np.nan, np.nan, None, +1) == "not run"


def _splits(mean: float, splits: int = 10) -> np.ndarray:
    """Per-split differences: ``mean`` +- 0.01 alternately (corrected p 0.030 at a mean of 0.016 on 10 splits)."""
    return mean + 0.01 * np.where(np.arange(splits) % 2, 1, -1)


def _metrics(gains: dict[str, np.ndarray], reference: str = "baseline") -> pd.DataFrame:
    base = 0.8 + 0.001 * np.arange(len(next(iter(gains.values()))))
    models = {reference: base, **{m: base + g for m, g in gains.items()}}
    return pd.concat([pd.DataFrame({"model": m, "split": range(len(v)), "srcc": v}) for m, v in models.items()],
                     ignore_index=True)


def test_claim_1_takes_no_correction_and_the_component_family_holm_at_its_level() -> None:
    """The same per-split gain (corrected p 0.03) supports claim 1, but not a component: Holm over three gives 0.09;
    the components' CI and MDE are at 0.05 / 3, the claim's at 0.05."""
    gain = _splits(0.016)
    metrics = _metrics({"full": gain, "gate": gain, "matching": _splits(0.0), "distillation": _splits(0.001)})
    srcc = metrics.pivot(index="split", columns="model", values="srcc")
    row = claims.paired_row("frozen", ACCURACY, "full - baseline", "SRCC", srcc["full"], srcc["baseline"], 0.2, 0.016,
                            +1)
    assert row["p"] == pytest.approx(0.030, abs=0.002) and np.isnan(row["p_holm"]) and row["verdict"] == "supported"
    assert row["confidence"] == 0.95 and row["mde"] == pytest.approx(evaluate.detectable_effect(gain, 0.2, 0.05))
    gate, matching, _ = claims.component_rows(FROZEN, srcc, 0.2)
    assert gate["p"] == pytest.approx(row["p"]) and gate["p_holm"] == pytest.approx(3 * row["p"])
    assert gate["verdict"] == "inconclusive" and matching["verdict"] == "inconclusive"
    assert gate["confidence"] == pytest.approx(1 - 0.05 / 3)
    assert gate["mde"] == pytest.approx(evaluate.detectable_effect(gain, 0.2, 0.05 / 3)) and gate["mde"] > row["mde"]
    assert gate["ci_low"] < 0 < row["ci_low"] and gate["ci_high"] > row["ci_high"]  # the family's CI holds 0
    # one component run (the others not trained): a family of one, at 0.05
    alone = claims.component_rows(FROZEN, srcc.drop(columns=["matching", "distillation"]), 0.2)
    assert alone[0]["p_holm"] == pytest.approx(row["p"]) and alone[0]["confidence"] == 0.95
    assert alone[0]["verdict"] == "supported" and [r["verdict"] for r in alone[1:]] == ["not run", "not run"]


def _run(splits: int = 30, models: tuple[str, ...] = ("baseline", "full"), shift: float = 0.03
         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-split metrics, sensitivity (both probes) and predictions where ``models[1]`` beats ``models[0]`` by
    ``shift`` SRCC on every split and moves less under semantic noise (additive probe only), and the gate changes
    nothing."""
    rng = np.random.default_rng(0)
    reference, full = models
    base = 0.80 + rng.normal(0, 0.02, splits)
    srcc = {"ridge": base - 0.01, "teacher": base, reference: base, full: base + shift + rng.normal(0, 0.005, splits),
            "gate": base + rng.normal(0, 0.005, splits)}
    metrics = pd.concat([pd.DataFrame({"model": m, "split": range(splits), "srcc": v, "plcc": v, "krcc": v,
                                       "rmse": 0.1}) for m, v in srcc.items()], ignore_index=True)
    shifts = {"additive": {reference: 0.22, full: 0.19, "gate": 0.22, "teacher": 0.2},
              "training": {reference: 0.3, full: 0.3, "gate": 0.3, "teacher": 0.3}}
    sensitivity = pd.concat([pd.DataFrame({"model": m, "probe": probe, "eps": 0.3 if probe == "additive" else 0.5,
                                           "form": "add" if probe == "additive" else "mix", "split": range(splits),
                                           "relative_shift": v + rng.normal(0, 0.005, splits)})
                             for probe, values in shifts.items() for m, v in values.items()], ignore_index=True)
    rows = []
    for split in range(splits):
        score = rng.uniform(size=40)
        far = np.arange(40) % 2 == 1  # the far half: full reads it right, the baseline does not
        rows.append(pd.DataFrame({"split": split, "image_id": [f"{split}_{i}" for i in range(40)], "score": score,
                                  "content_distance": far + rng.uniform(0, 0.1, 40),
                                  full: score + rng.normal(0, 0.05, 40),
                                  reference: np.where(far, rng.uniform(size=40), score)}))
    return metrics, sensitivity, pd.concat(rows, ignore_index=True)


def _cross(gain: float, splits: int = 3, images: int = 300, seed: int = 1) -> pd.DataFrame:
    """Every split's full and baseline scoring the same target images: the baseline is the score plus noise, full
    less noisy when ``gain``."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(size=images)
    noise = rng.normal(0, 0.3, images)  # the target images' own difficulty, shared by every split's models
    return pd.concat([pd.DataFrame({"image_id": [f"t{i}" for i in range(images)], "score": score, "split": s,
                                    "baseline": score + noise + rng.normal(0, 0.05, images),
                                    "full": score + noise * (1 - gain) + rng.normal(0, 0.05, images)})
                      for s in range(splits)], ignore_index=True)


def test_the_cross_dataset_row_bootstraps_the_shared_target_images() -> None:
    better = claims.cross_row("frozen", "csiq", _cross(0.6), "full", "baseline", 400, 0)
    assert better["verdict"] == "supported" and better["p"] < 0.01 and better["splits"] == 3
    assert better["ci_low"] < better["effect"] < better["ci_high"] and better["ci_low"] > 0
    assert better["claim"] == "4. cross-dataset generalisation (tested on csiq)" and "bootstrap" in better["test"]
    same = claims.cross_row("frozen", "csiq", _cross(0.0), "full", "baseline", 400, 0)
    assert same["verdict"] == "inconclusive" and same["ci_low"] < 0 < same["ci_high"] and same["p"] > 0.05
    assert 0 < same["mde"] < better["effect"]
    # the effect is the mean over the split models of the SRCC gain on all the target images
    table = _cross(0.6)
    gains = [evaluate.metrics(p["score"], p["full"])["srcc"] - evaluate.metrics(p["score"], p["baseline"])["srcc"]
             for _, p in table.groupby("split")]
    assert better["effect"] == pytest.approx(np.mean(gains))
    assert claims.cross_row("frozen", "csiq", table.drop(columns="baseline"), "full", "baseline", 400, 0)["verdict"] \
        == "not run"


@pytest.mark.slow  # the synthetic row trains 6 small models
def test_the_claims_table_finds_the_effects_that_are_there_and_not_those_that_are_not() -> None:
    metrics, sensitivity, predictions = _run()
    table = claims.claims_table(metrics, sensitivity, predictions, [FROZEN], 0.2, 0.016, STUDENT, 3)
    rows = table.set_index("claim")
    assert list(table.columns) == claims.COLUMNS and len(table) == 9 and (table["block"] == "frozen").all()
    accuracy = rows.loc[ACCURACY]
    assert accuracy["effect"] == pytest.approx(0.03, abs=0.003) and accuracy["verdict"] == "supported"
    assert accuracy["ci_low"] < 0.03 < accuracy["ci_high"] and accuracy["p"] < 0.05 and accuracy["splits"] == 30
    assert np.isnan(accuracy["p_holm"]) and accuracy["claimed"] == 0.016  # the primary test: no correction
    assert rows.loc[PAPER_PROBE, "effect"] == pytest.approx(-0.03, abs=0.005)
    assert rows.loc[PAPER_PROBE, "verdict"] == "supported" and "additive noise at eps 0.3" in rows.loc[PAPER_PROBE,
                                                                                                        "measure"]
    assert rows.loc[TRAINING_PROBE, "verdict"] == "inconclusive"
    assert "training noise (mix at eps 0.5 for full)" in rows.loc[TRAINING_PROBE, "measure"]
    assert rows.loc[FAR, "verdict"] == "supported"
    synthetic = rows.loc["3. robustness to semantic confounders (synthetic, truth known)"]
    assert synthetic["splits"] == 3 and synthetic["ci_low"] <= synthetic["effect"] <= synthetic["ci_high"]
    assert rows.loc[claims.CROSS_CLAIM, "verdict"] == "not run"
    assert rows.loc["5. each component contributes: gate", "verdict"] in {"inconclusive", "not supported"}
    assert rows.loc["5. each component contributes: matching", "verdict"] == "not run"  # not trained in this run
    markdown = claims.to_markdown(table, "t", [FROZEN])
    assert "| 1. accuracy: full beats its base | full - baseline | SRCC | 30 | +0.03" in markdown
    assert "**supported**" in markdown and "**not run**" in markdown and "##" not in markdown
    csv = pd.read_csv(pd.io.common.StringIO(table.to_csv(index=False)))
    assert csv["verdict"].tolist() == table["verdict"].tolist()  # the CSV holds what the Markdown shows


def test_in_fine_tune_mode_the_fine_tuned_models_come_first_and_the_frozen_ones_follow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claims, "synthetic_row", lambda block, student, seeds: {"block": block, "claim": "synthetic"})
    frozen = _run(6, shift=0.0)  # the frozen students are even
    tuned = _run(6, ("finetune_baseline", "finetune"))
    metrics, sensitivity = (pd.concat([f, t[~t["model"].isin(f["model"])]]) for f, t in zip(frozen[:2], tuned[:2]))
    predictions = frozen[2].merge(tuned[2][["image_id", "finetune", "finetune_baseline"]], on="image_id")
    cross = {"csiq": _cross(0.6).rename(columns={"full": "finetune", "baseline": "finetune_baseline"})}
    table = claims.claims_table(metrics, sensitivity, predictions, [FINETUNED, FROZEN], 0.2, 0.016, STUDENT, 3, cross,
                                {"resamples": 300, "seed": 0})
    rows = table.set_index(["block", "claim"])
    assert table["block"].drop_duplicates().tolist() == ["fine-tuned", "frozen"]
    assert table["claim"].tolist().count("synthetic") == 1  # the frozen students' (the student section's head)
    assert table.set_index("claim").loc["synthetic", "block"] == "frozen"
    tuned_accuracy, frozen_accuracy = rows.loc[("fine-tuned", ACCURACY)], rows.loc[("frozen", ACCURACY)]
    assert tuned_accuracy["comparison"] == "finetune - finetune_baseline" and tuned_accuracy["verdict"] == "supported"
    assert tuned_accuracy["effect"] == pytest.approx(0.03, abs=0.005) and tuned_accuracy["claimed"] == 0.016
    assert frozen_accuracy["comparison"] == "full - baseline" and pd.isna(frozen_accuracy["claimed"])
    assert abs(frozen_accuracy["effect"]) < 0.01 and frozen_accuracy["verdict"] == "inconclusive"
    assert rows.loc[("fine-tuned", PAPER_PROBE), "comparison"] == "finetune - finetune_baseline"
    assert rows.loc[("fine-tuned", PAPER_PROBE), "verdict"] == "supported"
    assert rows.loc[("fine-tuned", FAR), "verdict"] == "supported"
    crossed = f"{claims.CROSS_CLAIM} (tested on csiq)"
    assert rows.loc[("fine-tuned", crossed), "verdict"] == "supported"
    assert rows.loc[("frozen", crossed), "verdict"] == "not run"  # full and baseline not among the cross models
    gate = rows.loc[("fine-tuned", "5. each component contributes: gate")]
    assert gate["comparison"] == "finetune_gate - finetune_baseline" and gate["verdict"] == "not run"
    assert rows.loc[("frozen", "5. each component contributes: gate"), "verdict"] != "not run"
    markdown = claims.to_markdown(table, claims.title("livec", "deit3_small_patch16_224", FINETUNED),
                                  [FINETUNED, FROZEN])
    assert markdown.startswith("# livec: the paper's claims, tested (deit3_small_patch16_224, decoder head, "
                               "fine-tuned)\n")
    tuned_md, frozen_md = markdown.split("## Fine-tuned students: finetune vs finetune_baseline (decoder head, "
                                         "fine-tuned)")[1].split("## Frozen-backbone students: full vs baseline (mlp "
                                                                 "head, frozen features)")
    assert "| 1. accuracy: full beats its base | finetune - finetune_baseline | SRCC | 6 |" in tuned_md
    assert "| 1. accuracy: full beats its base | full - baseline | SRCC | 6 |" in frozen_md
    assert "finetune" not in frozen_md


def test_the_title_names_the_backbone_head_and_mode() -> None:
    assert claims.title("tiny", "tf_efficientnet_lite0", FROZEN) == (
        "tiny: the paper's claims, tested (tf_efficientnet_lite0, mlp head, frozen features)")
    assert FINETUNED.components == {"gate": "finetune_gate", "matching": "finetune_matching",
                                    "distillation": "finetune_distillation"}
    assert FROZEN.components == {c: c for c in claims.COMPONENTS}


def test_one_split_reads_inconclusive_where_the_effect_exists_and_shows_no_interval() -> None:
    metrics, sensitivity, _ = _run(1)
    srcc = metrics.pivot(index="split", columns="model", values="srcc")
    row = claims.paired_row("frozen", ACCURACY, "full - baseline", "SRCC", srcc["full"], srcc["baseline"], 0.2, 0.016,
                            +1)
    assert row["splits"] == 1 and np.isfinite(row["effect"]) and row["verdict"] == "inconclusive"
    assert [r["verdict"] for r in claims.sensitivity_rows(FROZEN, sensitivity, 0.2)] == ["inconclusive"] * 2
    line = claims.to_markdown(pd.DataFrame([row]).reindex(columns=claims.COLUMNS), "t").splitlines()[-1]
    assert f"| SRCC | 1 | {row['effect']:+.3f} | corrected resampled t |" in line and "[" not in line  # no CI


def test_headline_lists_the_models_of_the_run_in_order() -> None:
    metrics, _, _ = _run(6)
    summary = evaluate.summarise(metrics, "baseline", 0.2, resamples=200)
    table = claims.headline(summary, ["ridge", "teacher", "baseline", "full", "finetune"])
    assert table["model"].tolist() == ["ridge", "teacher", "baseline", "full"] and (table["splits"] == 6).all()
    assert table["SRCC mean [95% CI]"].str.match(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]").all()


def test_the_readable_table_rounds_to_the_precision_of_each_ci() -> None:
    rows = pd.DataFrame([
        {"block": "frozen", "claim": ACCURACY, "comparison": "full - baseline", "measure": "SRCC", "splits": 30,
         "effect": 0.01243, "ci_low": -0.002269, "ci_high": 0.02713, "confidence": 0.95, "test": "t", "p": 0.4157,
         "p_holm": np.nan, "mde": 0.01038, "claimed": 0.016, "verdict": "inconclusive"},
        {"block": "frozen", "claim": "5. gate", "comparison": "gate - baseline", "measure": "SRCC", "splits": 10,
         "effect": -0.008596, "ci_low": -0.01955, "ci_high": 0.002354, "confidence": 0.98333, "test": "t", "p": 0.04679,
         "p_holm": 0.1404, "mde": 0.01432, "claimed": np.nan, "verdict": "inconclusive"},
        {"block": "frozen", "claim": "2. probe", "comparison": "full - baseline", "measure": "shift", "splits": 30,
         "effect": -0.2313, "ci_low": -0.2655, "ci_high": -0.1971, "confidence": 0.95, "test": "t", "p": 2.665e-14,
         "p_holm": np.nan, "mde": 0.0491, "claimed": np.nan, "verdict": "supported"},
    ]).reindex(columns=claims.COLUMNS)
    text = claims.readable(rows)
    assert list(text.columns) == claims.READABLE
    assert text["effect [CI]"].tolist() == ["+0.012 [-0.002, +0.027]", "-0.009 [-0.020, +0.002] at 98.3%",
                                            "-0.231 [-0.266, -0.197]"]
    assert text["p"].tolist() == ["0.42", "0.14 (Holm)", "<0.001"]
    assert text["MDE"].tolist() == ["0.010", "0.014", "0.049"] and text["claimed"].tolist() == ["+0.016", "", ""]
    assert [claims.decimals(w) for w in (0.5, 0.05, 0.0049, np.nan, 0.0)] == [2, 3, 4, 3, 3]
