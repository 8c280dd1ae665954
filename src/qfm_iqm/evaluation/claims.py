"""The paper's claims (docs/method.md, "The paper's numbers and claims") tested on one dataset's run: one row per
claim with our effect, its CI, the test and its p-value, the smallest effect the run could have detected, and a verdict.

Verdicts: ``supported`` (p < alpha in the claimed direction), ``not supported`` (p < alpha against it, or no
significant effect although the run could have detected the claimed size), ``inconclusive`` (no significant
effect, and the run could not have detected the claimed size, or no size is claimed), ``not run``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from qfm_iqm.evaluation import evaluate
from qfm_iqm.method.diagnostics import nuisance_experiment

COLUMNS = ["claim", "comparison", "measure", "splits", "effect", "ci_low", "ci_high", "test", "p", "p_holm", "mde",
           "claimed", "verdict"]
COMPONENTS = ["gate", "matching", "distillation"]


def verdict(effect: float, p: float, mde: float, claimed: float | None, direction: int, alpha: float = 0.05) -> str:
    """The verdict on an effect claimed in ``direction`` (+1: higher, -1: lower), of size ``claimed`` if stated."""
    if np.isnan(p):
        return "not run"
    if p < alpha:
        return "supported" if effect * direction > 0 else "not supported"
    return "not supported" if claimed is not None and mde <= claimed else "inconclusive"


def paired_row(claim: str, comparison: str, measure: str, a: pd.Series, b: pd.Series, test_fraction: float,
               claimed: float | None, direction: int, p_holm: float = np.nan) -> dict:
    """A claim about ``a - b`` over splits (indexed by split), with the corrected resampled t-test; ``not run``
    when either is missing (None)."""
    if a is None or b is None:
        return {"claim": claim, "comparison": comparison, "measure": measure, "verdict": "not run"}
    t = evaluate.paired_tests(a, b, test_fraction, 0.95)
    decisive = t["p_corrected"] if np.isnan(p_holm) else p_holm
    return {"claim": claim, "comparison": comparison, "measure": measure, "splits": t["paired"], "effect": t["diff"],
            "ci_low": t["diff_ci_low"], "ci_high": t["diff_ci_high"], "test": "corrected resampled t",
            "p": t["p_corrected"], "p_holm": p_holm, "mde": t["mde"], "claimed": claimed,
            "verdict": verdict(t["diff"], decisive, t["mde"], claimed, direction)}


def far_content_srcc(predictions: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per split and model, the SRCC on the test images whose content is farthest from the training part (the
    half above the split's median ``content_distance``)."""
    rows = []
    for split, part in predictions.groupby("split"):
        far = part[part["content_distance"] > part["content_distance"].median()]
        rows += [{"split": split, "model": m, "srcc": stats.spearmanr(far["score"], far[m]).statistic}
                 for m in models]
    return pd.DataFrame(rows).pivot(index="split", columns="model", values="srcc")


def synthetic_row(student: dict, seeds: int) -> dict:
    """The behavioural test (``qfm_iqm.method.diagnostics``, confounded regime) with this run's head, matching
    settings and quality loss: the matching student's reliance on content over the baseline's, on ``seeds``
    independent draws (geometric mean ratio, plain t-test on the log ratios)."""
    logs = []
    for seed in range(seeds):
        r = nuisance_experiment(seed, student["arch"]["head"], student["matching"], regime="confounded",
                                loss=student["train"]["loss"])
        logs.append(np.log(r["matching"]["reliance"] / r["baseline"]["reliance"]))
    d = np.array(logs)
    low, high = evaluate.mean_ci(d, 0.0)
    p, mde = evaluate.corrected_ttest(d, 0.0), evaluate.detectable_effect(d, 0.0)
    return {"claim": "3. robustness to semantic confounders (synthetic, truth known)",
            "comparison": "matching / baseline", "measure": "reliance on confounded content, ratio",
            "splits": seeds, "effect": float(np.exp(d.mean())), "ci_low": float(np.exp(low)),
            "ci_high": float(np.exp(high)), "test": "t on log ratios (independent draws)", "p": p, "p_holm": np.nan,
            "mde": float(1 - np.exp(-mde)), "claimed": None, "verdict": verdict(d.mean(), p, mde, None, -1)}


def claims_table(metrics: pd.DataFrame, sensitivity: pd.DataFrame, predictions: pd.DataFrame, summary: pd.DataFrame,
                 reference: str, test_fraction: float, claimed_gain: float | None, student: dict,
                 synthetic_seeds: int) -> pd.DataFrame:
    """One row per claim (docs/method.md, "The paper's numbers and claims") for the run whose per-split
    ``metrics``, ``sensitivity`` and ``predictions`` (with ``content_distance``) and ``summary`` (Holm-adjusted
    p-values) are given."""
    srcc = metrics.pivot(index="split", columns="model", values="srcc")
    shift = sensitivity.pivot(index="split", columns="model", values="relative_shift")
    far = far_content_srcc(predictions, [m for m in ("full", reference) if m in predictions])
    holm = summary.set_index("model")[f"srcc_p_holm_vs_{reference}"]
    vs = f"full - {reference}"
    rows = [paired_row("1. accuracy: full beats its base", vs, "SRCC", srcc.get("full"), srcc.get(reference),
                       test_fraction, claimed_gain, +1, holm.get("full", np.nan)),
            paired_row("2. lower sensitivity to semantic noise", vs, "relative prediction shift", shift.get("full"),
                       shift.get(reference), test_fraction, None, -1),
            synthetic_row(student, synthetic_seeds),
            paired_row("3. robustness to semantic confounders (test images far in content)", vs,
                       "SRCC on the half of the test part farthest from the training part", far.get("full"),
                       far.get(reference), test_fraction, None, +1),
            {"claim": "4. cross-dataset generalisation", "comparison": "results/cross_dataset/matrix.md (cross_dataset"
             ".pairs)", "measure": "SRCC", "verdict": "not run"}]
    rows += [paired_row(f"5. each component contributes: {name}", f"{name} - {reference}", "SRCC", srcc.get(name),
                        srcc.get(reference), test_fraction, None, +1, holm.get(name, np.nan)) for name in COMPONENTS]
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def headline(summary: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """The report's headline numbers: per model (those of ``models`` in the run), its splits, median SRCC and PLCC
    and mean SRCC with its corrected t CI, as text."""
    rows = summary.set_index("model").reindex([m for m in models if m in set(summary["model"])])
    return pd.DataFrame({"model": rows.index, "splits": rows["splits"].astype(int).to_numpy(),
                         "SRCC median": rows["srcc_median"].map("{:.3f}".format).to_numpy(),
                         "SRCC mean [95% CI]": [f"{r.srcc_mean:.3f} [{r.srcc_mean_ci_low:.3f}, {r.srcc_mean_ci_high:.3f}]"
                                                for r in rows.itertuples()],
                         "PLCC median": rows["plcc_median"].map("{:.3f}".format).to_numpy()})


def to_markdown(table: pd.DataFrame, title: str) -> str:
    """The claims table as Markdown, with its legend."""
    def num(v: object, fmt: str = "{:+.4f}") -> str:
        return "" if v is None or pd.isna(v) else fmt.format(v)

    legend = ("One row per claim (docs/method.md, The paper's numbers and claims). Effect: mean over the splits "
              "of the difference (the geometric mean ratio for the synthetic row), [95% t CI with the Nadeau-Bengio "
              "corrected variance]. "
              "p: corrected resampled t-test; p Holm: adjusted over the student variants tested against the baseline "
              "(the verdict uses it where given). MDE: the smallest effect the test detects with 80% power at p < 0.05 "
              "on these splits (for the ratio: the reduction). Claimed: the published size, where the paper gives "
              "one. Verdicts: supported / not supported / inconclusive (the run could not have detected the claimed "
              "size, or no size is claimed).")
    lines = [f"# {title}", "", legend, "",
             "| claim | comparison | measure | splits | effect [95% CI] | test | p | p Holm | MDE | claimed | verdict |",
             "|" + "---|" * 11]
    for _, r in table.iterrows():
        fmt = "{:.3f}" if "ratio" in str(r["measure"]) else "{:+.4f}"
        effect = "" if pd.isna(r["effect"]) else (f"{num(r['effect'], fmt)} [{num(r['ci_low'], fmt)}, "
                                                   f"{num(r['ci_high'], fmt)}]")
        splits = "" if pd.isna(r["splits"]) else str(int(r["splits"]))
        cells = [r["claim"], num(r["comparison"], "{}"), num(r["measure"], "{}"), splits, effect,
                 num(r["test"], "{}"), num(r["p"], "{:.4f}"), num(r["p_holm"], "{:.4f}"), num(r["mde"], "{:.4f}"),
                 num(r["claimed"], "{:+.3f}"), f"**{r['verdict']}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
