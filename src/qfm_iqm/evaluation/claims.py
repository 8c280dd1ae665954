"""The paper's claims (docs/method.md, "The paper's numbers and claims") tested on one dataset's run: one row per
claim with our effect, its CI, the test and its p-value, the smallest effect the run could have detected, and a verdict.

In fine-tune mode the claims are tested on the fine-tuned models (``finetune`` against the fine-tuned reference) and
the frozen students follow in a second block, with the synthetic test of claim 3 (run with the student section's head
and matching settings); otherwise the frozen students are the only block.

Levels: claim 1 is the one primary test, stated in advance, at alpha 0.05 with no multiplicity correction; so are
claims 2, 3 and 4, each a test of its own. The component family (claim 5) is Holm-adjusted: its verdicts read the Holm
p-values at alpha, and its CIs and MDEs are at alpha / m (m components tested: Bonferroni, Holm's strictest step), so
that the CIs hold together over the family.

Verdicts (``verdict``): ``supported`` (p below the level in the claimed direction), ``not supported`` (the CI's bound
on the claimed side falls short of the claimed size, or p below the level against the claimed direction),
``inconclusive`` (neither, or fewer than 2 splits: no test), ``not run`` (the models are missing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from qfm_iqm.evaluation import evaluate
from qfm_iqm.settings import finetuned_name

COLUMNS = ["block", "claim", "comparison", "measure", "splits", "effect", "ci_low", "ci_high", "confidence", "test",
           "p", "p_holm", "mde", "claimed", "verdict"]
COMPONENTS = ["gate", "matching", "distillation"]
ALPHA = 0.05
POWER = 0.8
PROBES = {"additive": "the paper's probe", "training": "the training noise"}
CROSS_CLAIM = "4. cross-dataset generalisation"
CORRECTED_T = "corrected resampled t"


@dataclass(frozen=True)
class Block:
    """One block of the table: ``full`` against ``reference`` and each component's model, named as the fine-tuned
    models are (``finetuned_name``) when ``fine_tuned``; ``head`` and ``mode`` describe the block's students."""
    name: str
    full: str
    reference: str
    head: str
    mode: str
    fine_tuned: bool = False

    @property
    def components(self) -> dict[str, str]:
        """Component -> the model that adds it to the reference."""
        return {c: finetuned_name(c) if self.fine_tuned else c for c in COMPONENTS}

    @property
    def heading(self) -> str:
        """The block's section heading in the Markdown table (with several blocks)."""
        students = "Fine-tuned students" if self.fine_tuned else "Frozen-backbone students"
        return f"{students}: {self.full} vs {self.reference} ({self.head} head, {self.mode})"


def _missing(value: float | None) -> bool:
    """None or NaN."""
    return value is None or bool(np.isnan(value))


def verdict(effect: float, p: float, ci_low: float, ci_high: float, claimed: float | None, direction: int,
            alpha: float = ALPHA) -> str:
    """The verdict on an effect claimed in ``direction`` (+1: higher, -1: lower), of size ``claimed`` (positive, in
    that direction) if stated, from its p-value (compared with ``alpha``) and its CI at the level the verdict uses.

    ``supported``: p < alpha in the claimed direction; ``not supported``: p < alpha the other way, or the CI's bound
    on the claimed side (``ci_high`` for +1, ``ci_low`` for -1) does not reach the claimed size; else ``inconclusive``
    (also with no p: fewer than 2 splits); ``not run`` without an effect. A significant effect smaller than the
    claimed size reads ``supported``: the claim is the direction, the size is shown beside it."""
    if _missing(effect):
        return "not run"
    if _missing(p):
        return "inconclusive"
    if p < alpha:
        return "supported" if effect * direction > 0 else "not supported"
    if not _missing(claimed) and (ci_high if direction > 0 else -ci_low) < claimed:
        return "not supported"
    return "inconclusive"


def not_run(block: str, claim: str, comparison: str, measure: str) -> dict:
    """A row whose models are missing."""
    return {"block": block, "claim": claim, "comparison": comparison, "measure": measure, "verdict": "not run"}


def paired_row(block: str, claim: str, comparison: str, measure: str, a: pd.Series | None, b: pd.Series | None,
               test_fraction: float, claimed: float | None, direction: int, level: float = ALPHA,
               p_holm: float | None = None) -> dict:
    """A claim about ``a - b`` over splits (indexed by split), with the corrected resampled t-test; its CI and MDE at
    ``level`` (confidence 1 - level). The verdict reads p at ``level``, or ``p_holm`` (a family's Holm-adjusted p,
    ``component_rows``) at ``ALPHA``. ``not run`` when either is missing (None)."""
    if a is None or b is None:
        return not_run(block, claim, comparison, measure)
    t = evaluate.paired_tests(a, b, test_fraction, 1 - level)
    decisive, alpha = (t["p_corrected"], level) if p_holm is None else (p_holm, ALPHA)
    return {"block": block, "claim": claim, "comparison": comparison, "measure": measure, "splits": t["paired"],
            "effect": t["diff"], "ci_low": t["diff_ci_low"], "ci_high": t["diff_ci_high"], "confidence": 1 - level,
            "test": CORRECTED_T, "p": t["p_corrected"], "p_holm": np.nan if p_holm is None else p_holm,
            "mde": t["mde"], "claimed": claimed,
            "verdict": verdict(t["diff"], decisive, t["diff_ci_low"], t["diff_ci_high"], claimed, direction, alpha)}


def component_rows(block: Block, srcc: pd.DataFrame, test_fraction: float) -> list[dict]:
    """Claim 5, one row per component against the block's reference: Holm over the components tested (m), their CIs
    and MDEs at ``ALPHA`` / m."""
    ref = srcc.get(block.reference)
    pairs = {c: (srcc.get(m), ref) for c, m in block.components.items()}
    p = pd.Series({c: np.nan if a is None or b is None else
                   evaluate.paired_tests(a, b, test_fraction, 1 - ALPHA)["p_corrected"] for c, (a, b) in pairs.items()},
                  dtype=float)
    holm, family = evaluate.holm(p), max(int(p.notna().sum()), 1)
    return [paired_row(block.name, f"5. each component contributes: {c}", f"{block.components[c]} - {block.reference}",
                       "SRCC", a, b, test_fraction, None, +1, ALPHA / family, holm[c]) for c, (a, b) in pairs.items()]


def far_content_srcc(predictions: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per split and model, the SRCC on the test images whose content is farthest from the training part (the
    half above the split's median ``content_distance``)."""
    rows = []
    for split, part in predictions.groupby("split"):
        far = part[part["content_distance"] > part["content_distance"].median()]
        rows += [{"split": split, "model": m, "srcc": stats.spearmanr(far["score"], far[m]).statistic}
                 for m in models]
    return pd.DataFrame(rows, columns=["split", "model", "srcc"]).pivot(index="split", columns="model", values="srcc")


def sensitivity_rows(block: Block, sensitivity: pd.DataFrame, test_fraction: float) -> list[dict]:
    """Claim 2, one row per probe (``sensitivity``'s ``probe`` column): "additive", the paper's superposition at
    evaluation.sensitivity_eps, and "training", each model's own training noise (its form and eps)."""
    rows = []
    for probe, name in PROBES.items():
        part = sensitivity[sensitivity["probe"] == probe]
        shift = part.pivot(index="split", columns="model", values="relative_shift")
        own = part[part["model"] == block.full]
        how = (f"additive noise at eps {own['eps'].iloc[0]:g}" if probe == "additive" else
               f"each model's training noise ({own['form'].iloc[0]} at eps {own['eps'].iloc[0]:g} for {block.full})"
               ) if len(own) else "not measured"
        rows.append(paired_row(block.name, f"2. lower sensitivity to semantic noise ({name})",
                               f"{block.full} - {block.reference}", f"relative prediction shift, {how}",
                               shift.get(block.full), shift.get(block.reference), test_fraction, None, -1))
    return rows


def synthetic_row(block: str, student: dict, seeds: int) -> dict:
    """The behavioural test (``qfm_iqm.method.diagnostics``, confounded regime) with this run's head, matching
    settings and quality loss: the matching student's reliance on content over the baseline's, on ``seeds``
    independent draws (geometric mean ratio, plain t-test on the log ratios, at ``ALPHA``)."""
    from qfm_iqm.method.diagnostics import nuisance_experiment

    logs = []
    for seed in range(seeds):
        r = nuisance_experiment(seed, student["arch"]["head"], student["matching"], regime="confounded",
                                loss=student["train"]["loss"])
        logs.append(np.log(r["matching"]["reliance"] / r["baseline"]["reliance"]))
    d = np.array(logs)
    low, high = evaluate.mean_ci(d, 0.0, 1 - ALPHA)
    p, mde = evaluate.corrected_ttest(d, 0.0), evaluate.detectable_effect(d, 0.0, ALPHA, POWER)
    return {"block": block, "claim": "3. robustness to semantic confounders (synthetic, truth known)",
            "comparison": "matching / baseline", "measure": "reliance on confounded content, ratio",
            "splits": seeds, "effect": float(np.exp(d.mean())), "ci_low": float(np.exp(low)),
            "ci_high": float(np.exp(high)), "confidence": 1 - ALPHA, "test": "t on log ratios (independent draws)",
            "p": p, "p_holm": np.nan, "mde": float(1 - np.exp(-mde)), "claimed": None,
            "verdict": verdict(d.mean(), p, low, high, None, -1)}


def _rowwise_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``x`` with the same row of ``y`` (NaN for a constant row)."""
    x, y = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1))


def srcc_gains(score: np.ndarray, a: np.ndarray, b: np.ndarray, index: np.ndarray) -> np.ndarray:
    """For each row of ``index`` (image rows of a resample), the mean over the split models (columns of ``a`` and
    ``b``, images x splits) of SRCC(score, a) - SRCC(score, b) on those images."""
    ranks = stats.rankdata(score[index], axis=1)
    gains = [_rowwise_corr(ranks, stats.rankdata(a[index, s], axis=1))
             - _rowwise_corr(ranks, stats.rankdata(b[index, s], axis=1)) for s in range(a.shape[1])]
    return np.nanmean(np.stack(gains), axis=0)


def bootstrap_gain(score: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int, seed: int,
                   chunk: int = 2_000_000) -> tuple[float, np.ndarray]:
    """The mean SRCC gain of ``a`` over ``b`` (``srcc_gains``) on all images, and its paired bootstrap distribution:
    the same target images resampled with replacement for every split model (``chunk``: values ranked at once)."""
    rng = np.random.default_rng(seed)
    n = len(score)
    index = rng.integers(0, n, (resamples, n))
    step = max(1, chunk // n)
    boot = np.concatenate([srcc_gains(score, a, b, index[i:i + step]) for i in range(0, resamples, step)])
    return float(srcc_gains(score, a, b, np.arange(n)[None])[0]), boot


def cross_row(block: str, test: str, predictions: pd.DataFrame, full: str, reference: str, resamples: int, seed: int,
              alpha: float = ALPHA) -> dict:
    """Claim 4 on one cross-dataset pair: ``full`` against ``reference``, every split's model scoring the whole
    target dataset ``test`` (``predictions``: image_id, score, split and a column per model, all splits). The split
    models share the one target set, so the split-to-split spread misses its sampling: a paired bootstrap over target
    images (percentile CI at 1 - ``alpha``, two-sided p from the bootstrap distribution, MDE by the normal
    approximation on its standard deviation), conditional on the trained split models."""
    claim, comparison = f"{CROSS_CLAIM} (tested on {test})", f"{full} - {reference}"
    if full not in predictions or reference not in predictions:
        return not_run(block, claim, comparison, f"SRCC on all of {test} (not both among cross_dataset.models)")
    wide = {m: predictions.pivot(index="image_id", columns="split", values=m) for m in (full, reference)}
    score = predictions.groupby("image_id")["score"].first().reindex(wide[full].index).to_numpy()
    a, b = wide[full].to_numpy(), wide[reference].reindex_like(wide[full]).to_numpy()
    effect, boot = bootstrap_gain(score, a, b, resamples, seed)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * (min((boot <= 0).sum(), (boot >= 0).sum()) + 1) / (len(boot) + 1))
    mde = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(POWER)) * boot.std(ddof=1)
    return {"block": block, "claim": claim, "comparison": comparison,
            "measure": f"SRCC on all {len(score)} images of {test}, mean over the split models", "splits": a.shape[1],
            "effect": effect, "ci_low": float(low), "ci_high": float(high), "confidence": 1 - alpha,
            "test": f"paired bootstrap over target images ({resamples} resamples)", "p": p, "p_holm": np.nan,
            "mde": float(mde), "claimed": None, "verdict": verdict(effect, p, low, high, None, +1, alpha)}


def block_rows(block: Block, metrics: pd.DataFrame, sensitivity: pd.DataFrame, predictions: pd.DataFrame,
               test_fraction: float, claimed: float | None, cross: dict[str, pd.DataFrame],
               bootstrap: dict) -> list[dict]:
    """Claims 1, 2, 3 (far content), 4 and 5 for one block (the synthetic row is the table's, ``claims_table``)."""
    srcc = metrics.pivot(index="split", columns="model", values="srcc")
    far = far_content_srcc(predictions, [m for m in (block.full, block.reference) if m in predictions])
    vs = f"{block.full} - {block.reference}"
    rows = [paired_row(block.name, "1. accuracy: full beats its base", vs, "SRCC", srcc.get(block.full),
                       srcc.get(block.reference), test_fraction, claimed, +1),
            *sensitivity_rows(block, sensitivity, test_fraction),
            paired_row(block.name, "3. robustness to semantic confounders (test images far in content)", vs,
                       "SRCC on the half of the test part farthest from the training part", far.get(block.full),
                       far.get(block.reference), test_fraction, None, +1)]
    rows += [cross_row(block.name, test, table, block.full, block.reference, bootstrap["resamples"], bootstrap["seed"])
             for test, table in cross.items()] or [not_run(block.name, CROSS_CLAIM, "no cross_dataset.pairs trained "
                                                          "on this dataset", "SRCC")]
    return rows + component_rows(block, srcc, test_fraction)


def claims_table(metrics: pd.DataFrame, sensitivity: pd.DataFrame, predictions: pd.DataFrame, blocks: list[Block],
                 test_fraction: float, claimed_gain: float | None, student: dict, synthetic_seeds: int,
                 cross: dict[str, pd.DataFrame] | None = None, bootstrap: dict | None = None) -> pd.DataFrame:
    """One row per claim (docs/method.md, "The paper's numbers and claims") and block for the run whose per-split
    ``metrics``, ``sensitivity`` (with its ``probe`` column) and ``predictions`` (with ``content_distance``) are
    given; ``cross``: test dataset -> the cross-dataset predictions of every split (``cross_row``). The first block
    is the paper's comparison: the claimed size (``claimed_gain``) is its. The synthetic row (``student``'s settings,
    ``synthetic_seeds`` draws) is the frozen students' (``student`` is theirs)."""
    bootstrap = bootstrap or {"resamples": 2000, "seed": 0}
    rows = []
    for i, block in enumerate(blocks):
        part = block_rows(block, metrics, sensitivity, predictions, test_fraction, claimed_gain if i == 0 else None,
                          cross or {}, bootstrap)
        synthetic = [] if block.fine_tuned else [synthetic_row(block.name, student, synthetic_seeds)]
        rows += part[:3] + synthetic + part[3:]
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def title(dataset: str, backbone: str, block: Block) -> str:
    """The table's title: the dataset, and the backbone, head and mode of the paper's comparison (the first block)."""
    return f"{dataset}: the paper's claims, tested ({backbone}, {block.head} head, {block.mode})"


def headline(summary: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """The report's headline numbers: per model (those of ``models`` in the run), its splits, median SRCC and PLCC
    and mean SRCC with its corrected t CI (on Fisher's z scale, ``evaluate.correlation_ci``), as text."""
    rows = summary.set_index("model").reindex([m for m in models if m in set(summary["model"])])
    return pd.DataFrame({"model": rows.index, "splits": rows["splits"].astype(int).to_numpy(),
                         "SRCC median": rows["srcc_median"].map("{:.3f}".format).to_numpy(),
                         "SRCC mean [95% CI]": [f"{r.srcc_mean:.3f} [{r.srcc_mean_ci_low:.3f}, "
                                                f"{r.srcc_mean_ci_high:.3f}]" for r in rows.itertuples()],
                         "PLCC median": rows["plcc_median"].map("{:.3f}".format).to_numpy()})


LEGEND = ("One row per claim (docs/method.md, The paper's numbers and claims). Effect: mean over the splits of the "
          "difference (the geometric mean ratio for the synthetic row; for claim 4, the mean over the split models of "
          "the SRCC difference on the whole target dataset) [CI: Nadeau-Bengio corrected t, at 95% unless the "
          "cell names its level], rounded to two significant digits of the CI's half-width. Test and p: the corrected resampled t-test over splits; for claim 4 a paired bootstrap over "
          "the target images (every split's model scores the same target set, so the spread between splits misses "
          "its sampling; conditional on the trained models, percentile CI, two-sided p from the bootstrap "
          "distribution). Levels: claim 1 is the one primary test, stated in advance (alpha 0.05, no multiplicity "
          "correction), as are claims 2 to 4 each; claim 5's components form one family: their p (marked Holm) is "
          "Holm-adjusted over the components tested (m) and decides their verdict at 0.05, their CI and MDE are at alpha 0.05 / m "
          "(Bonferroni, Holm's strictest step: simultaneous over the family). MDE: the smallest effect the test "
          "detects with 80% power at that level (for the ratio: the reduction; for claim 4: normal approximation on "
          "the bootstrap SD). The synthetic row belongs to the frozen students (their head and matching settings). "
          "Claimed: the published size, where the paper gives one (the paper's comparison, the first block, only). "
          "Verdicts: supported (p below the level, in the claimed direction); not supported (the CI's bound on the "
          "claimed side falls short of the claimed size, or significant the other way); inconclusive (otherwise, and "
          "with fewer than 2 splits); not run (models missing).")
READABLE = ["block", "claim", "comparison", "measure", "splits", "effect [CI]", "test", "p", "MDE", "claimed",
            "verdict"]


def decimals(half_width: float) -> int:
    """Decimals that show a CI's half-width to two significant digits (3 where there is no CI), between 2 and 6."""
    if not np.isfinite(half_width) or half_width <= 0:
        return 3
    return int(np.clip(1 - np.floor(np.log10(half_width)), 2, 6))


def _p_value(p: float) -> str:
    return "" if pd.isna(p) else "<0.001" if p < 0.001 else f"{p:.2g}"


def readable_row(r: pd.Series) -> dict[str, str]:
    """One claims row as text, rounded to the precision its CI supports (``decimals``): ``+0.012 [-0.002, +0.027]``,
    the CI's level where it is not 95%, the Holm p where there is one, the MDE at the effect's decimals."""
    interval = not pd.isna(r["ci_low"])  # none with fewer than 2 splits
    places = decimals((r["ci_high"] - r["ci_low"]) / 2 if interval else np.nan)
    sign = "" if "ratio" in str(r["measure"]) else "+"

    def num(v: float, fmt: str = f"{{:{sign}.{places}f}}") -> str:
        return "" if pd.isna(v) else fmt.format(v)

    effect = num(r["effect"]) + (f" [{num(r['ci_low'])}, {num(r['ci_high'])}]" if interval else "")
    if interval and not np.isclose(r["confidence"], 1 - ALPHA):
        effect += f" at {r['confidence']:.1%}"
    holm = not pd.isna(r["p_holm"])
    return {"block": r["block"], "claim": r["claim"], "comparison": num(r["comparison"], "{}"),
            "measure": num(r["measure"], "{}"), "splits": num(r["splits"], "{:.0f}"), "effect [CI]": effect,
            "test": num(r["test"], "{}"), "p": _p_value(r["p_holm"] if holm else r["p"]) + (" (Holm)" if holm else ""),
            "MDE": num(r["mde"], f"{{:.{places}f}}"), "claimed": num(r["claimed"], "{:+.3f}"), "verdict": num(r["verdict"], "{}")}


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table as a reader sees it (the report's, the Markdown's): text cells, rounded (``readable_row``)."""
    return pd.DataFrame([readable_row(r) for _, r in table.iterrows()], columns=READABLE)


def to_markdown(table: pd.DataFrame, title: str, blocks: list[Block] | None = None) -> str:
    """The claims table as Markdown (``readable``), with its legend: one section per block when there are several
    (``blocks``, in the table's ``block`` order)."""
    text = readable(table).assign(verdict=lambda t: "**" + t["verdict"] + "**")
    lines = [f"# {title}", "", LEGEND]
    sections = blocks if blocks and len(blocks) > 1 else [None]
    for block in sections:
        rows = text if block is None else text[text["block"] == block.name]
        lines += [""] if block is None else ["", f"## {block.heading}", ""]
        lines += ["| " + " | ".join(READABLE[1:]) + " |", "|" + "---|" * (len(READABLE) - 1)]
        lines += ["| " + " | ".join(r[1:]) + " |" for r in rows.itertuples(index=False)]
    return "\n".join(lines) + "\n"
