"""Evaluation: test predictions and correlation metrics per split, the ridge floor, and median/IQR summaries.

The functions that run trained models import torch themselves: the summaries and figures import this module
without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from qfm_iqm.features.cache import FeatureSet, model_input
from qfm_iqm.method.pairs import cosine_distance_matrix

METRICS = ["srcc", "plcc", "krcc", "rmse"]


def metrics(score: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """SRCC, PLCC, KRCC (scipy.stats) and RMSE on the normalised score scale."""
    return {
        "srcc": float(stats.spearmanr(score, pred).statistic),
        "plcc": float(stats.pearsonr(score, pred).statistic),
        "krcc": float(stats.kendalltau(score, pred).statistic),
        "rmse": float(np.sqrt(np.mean((np.asarray(score) - np.asarray(pred)) ** 2))),
    }


def ridge_floor(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alphas: list[float]) -> np.ndarray:
    """Ridge regression on crop-averaged, standardised features; alpha by CV on the train part."""
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
    model.fit(x_train.mean(1), y_train)
    return model.predict(x_test.mean(1))


def split_metrics(predictions: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """One row per model: metrics of its ``models`` column against ``score``."""
    return pd.DataFrame([{"model": m, **metrics(predictions["score"], predictions[m])} for m in models])


def split_evaluation(split: int, train_rows: pd.DataFrame, train_feats: FeatureSet, rows: pd.DataFrame,
                     feats: FeatureSet, activations: FeatureSet | None, models: dict[str, Any],
                     ridge_alphas: list[float], noise: dict,
                     finetuned: Sequence[pd.DataFrame] = ()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The test part of one split: its ``rows`` with their cached ``feats`` (and ``activations``, read by the
    models with a trained backbone top), after the training part's ``train_rows`` and ``train_feats``.

    Returns the predictions (with each image's content distance to the training part) of the ridge floor, of
    every model in ``models`` and of the fine-tuned students (``finetuned``: tables of image_id and one model's column);
    their metrics; and each model's sensitivity to matched semantic noise (``qfm_iqm.evaluation.sensitivity``), one
    row per model and probe: "additive", the paper's (``noise``: tau, k_fallback, eps, large_gap), and "training",
    the noise the model's student trained with (``noise["training"]``: model name -> its eps and form; models
    without an entry get the additive probe only).
    """
    from qfm_iqm.evaluation.sensitivity import ADDITIVE, encode, matched_partners, sensitivity
    from qfm_iqm.method.train import predict

    y = rows["score"].to_numpy()
    preds = rows[["image_id", "score", "score_raw", "ref_id", "distortion", "level"]].assign(split=split)
    preds["content_distance"] = cosine_distance_matrix(feats.semantic(), train_feats.semantic()).min(1)
    preds["ridge"] = ridge_floor(train_feats.features, train_rows["score"].to_numpy(), feats.features, ridge_alphas)
    partners = matched_partners(rows["image_id"].to_numpy(), y, feats.semantic(), noise["tau"], noise["k_fallback"])
    sens = []
    for name, model in models.items():
        x = model_input(model, feats, activations)
        preds[name] = predict(model, x)
        feats_in = encode(model, x)
        probes = {"additive": (noise["eps"], ADDITIVE)}
        if name in noise.get("training", {}):
            probes["training"] = (noise["training"][name]["eps"], noise["training"][name]["form"])
        sens += [{"model": name, "probe": probe, **sensitivity(model, x, y, partners, eps, noise["large_gap"], feats_in,
                                                               form)} for probe, (eps, form) in probes.items()]
    names = ["ridge", *models]
    for table in finetuned:
        name = table.columns.drop("image_id")[0]
        preds[name] = preds["image_id"].map(table.set_index("image_id")[name])
        names.append(name)
    return preds, split_metrics(preds, names).assign(split=split), pd.DataFrame(sens).assign(split=split)


def cross_evaluation(split: int, train_rows: pd.DataFrame, train_x: np.ndarray, rows: pd.DataFrame,
                     feats: FeatureSet, activations: FeatureSet | None, names: list[str], models: dict[str, Any],
                     ridge_alphas: list[float],
                     finetuned: dict[str, np.ndarray] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every image of another dataset (``rows``, cached ``feats`` and ``activations``) scored by the models
    ``names`` of one split of the training dataset, in that order: the ridge floor (fitted on the training part's
    ``train_rows`` and features ``train_x``), the fine-tuned students (their predictions ``finetuned``) and the models
    in ``models``. Returns the predictions and their metrics."""
    from qfm_iqm.method.train import predict

    finetuned = finetuned or {}
    preds = rows[["image_id", "score", "score_raw"]].assign(split=split)
    for name in names:
        if name == "ridge":
            preds[name] = ridge_floor(train_x, train_rows["score"].to_numpy(), feats.features, ridge_alphas)
        elif name in finetuned:
            preds[name] = finetuned[name]
        else:
            preds[name] = predict(models[name], model_input(models[name], feats, activations))
    return preds, split_metrics(preds, names).assign(split=split)


def bootstrap_ci(values: np.ndarray, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap CI of the median over splits; with fewer than two distinct values the
    interval collapses to the median (NaN without values)."""
    if len(values) < 2 or np.ptp(values) == 0:
        v = float(np.median(values)) if len(values) else np.nan
        return v, v
    res = stats.bootstrap((values,), np.median, n_resamples=resamples, confidence_level=confidence,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_wilcoxon(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired per-split values (1.0 when identical)."""
    d = np.asarray(a) - np.asarray(b)
    if np.allclose(d, 0):
        return 1.0
    return float(stats.wilcoxon(a, b).pvalue)


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p-value the exact Wilcoxon signed-rank test can give on ``n`` pairs (all of one sign)."""
    return min(1.0, 2.0 ** (1 - n))


def corrected_se(d: np.ndarray, test_fraction: float) -> float:
    """Standard error of the mean of ``d``, per-split differences (or values) from repeated random splits
    whose test parts are ``test_fraction`` of the data: the Nadeau and Bengio (2003) variance
    (1/J + n_test/n_train) s^2, which allows for the training parts the splits share."""
    return float(np.sqrt((1 / len(d) + test_fraction / (1 - test_fraction)) * np.var(d, ddof=1)))


def corrected_ttest(d: np.ndarray, test_fraction: float) -> float:
    """Two-sided p-value of the corrected resampled t-test (Nadeau and Bengio, 2003) that the mean of the
    per-split differences ``d`` is 0; 1.0 when they are all equal to 0, NaN with fewer than 2 splits."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return np.nan
    se = corrected_se(d, test_fraction)
    if se == 0:
        return 1.0 if np.allclose(d, 0) else 0.0
    return float(2 * stats.t.sf(abs(d.mean()) / se, len(d) - 1))


def mean_ci(d: np.ndarray, test_fraction: float, confidence: float = 0.95) -> tuple[float, float]:
    """t-based CI of the mean of ``d`` with the corrected standard error (NaN with fewer than 2 splits)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return np.nan, np.nan
    half = stats.t.ppf((1 + confidence) / 2, len(d) - 1) * corrected_se(d, test_fraction)
    return float(d.mean() - half), float(d.mean() + half)


def correlation_ci(r: np.ndarray, test_fraction: float, confidence: float = 0.95) -> tuple[float, float]:
    """``mean_ci`` of per-split correlations ``r`` on Fisher's z scale (arctanh), back through tanh: the interval of
    the z-averaged correlation, inside [-1, 1] (NaN with fewer than 2 splits)."""
    z = np.arctanh(np.clip(np.asarray(r, dtype=float), -1 + 1e-12, 1 - 1e-12))
    return tuple(float(np.tanh(v)) for v in mean_ci(z, test_fraction, confidence))


def detectable_effect(d: np.ndarray, test_fraction: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean difference the corrected t-test on these splits detects with ``power`` at two-sided
    ``alpha``, given the spread of ``d`` (non-central t; NaN with fewer than 2 splits or no spread)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2 or np.var(d) == 0:
        return np.nan
    return detectable_effect_at(float(np.std(d, ddof=1)), len(d), test_fraction, alpha, power)


def detectable_effect_at(sd: float, splits: int, test_fraction: float, alpha: float = 0.05,
                         power: float = 0.8) -> float:
    """``detectable_effect`` of ``splits`` per-split differences whose standard deviation is ``sd``: what a run of
    that many splits could detect."""
    df = splits - 1
    se = float(np.sqrt((1 / splits + test_fraction / (1 - test_fraction)) * sd ** 2))
    crit = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(nc: float) -> float:  # power at non-centrality nc, less the target (the lower tail NaNs far out)
        return stats.nct.sf(crit, df, nc) + np.nan_to_num(stats.nct.cdf(-crit, df, nc)) - power

    return float(optimize.brentq(shortfall, 0.0, 40.0) * se)  # power at nc 40 is over 0.99 from 1 df on


def holm(pvalues: pd.Series) -> pd.Series:
    """Holm's step-down adjustment of a family of p-values (NaN entries are not part of the family)."""
    p = pvalues.dropna().sort_values()
    adjusted = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p.to_numpy()))
    return pd.Series(adjusted, index=p.index).reindex(pvalues.index)


def paired_tests(a: pd.Series, b: pd.Series, test_fraction: float, confidence: float) -> dict[str, float]:
    """``a`` against ``b`` over the splits both have: mean difference with its corrected t CI at ``confidence``,
    corrected t-test and Wilcoxon p-values, the smallest difference detectable at two-sided alpha = 1 - ``confidence``,
    and the number of splits where ``a`` is higher."""
    both = a.notna() & b.notna()
    d = (a[both] - b[both]).to_numpy()
    low, high = mean_ci(d, test_fraction, confidence)
    return {"diff": float(d.mean()) if len(d) else np.nan, "diff_ci_low": low, "diff_ci_high": high,
            "p_corrected": corrected_ttest(d, test_fraction), "p_wilcoxon": paired_wilcoxon(a[both], b[both]),
            "mde": detectable_effect(d, test_fraction, 1 - confidence), "wins": int((d > 0).sum()), "paired": len(d),
            "too_few_splits": min_wilcoxon_p(len(d)) >= 0.05}


def summarise(per_split: pd.DataFrame, reference: str | None = None, test_fraction: float = 0.2,
              family: list[str] | None = None, resamples: int = 2000, confidence: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """Median and inter-quartile range of every metric per model over splits; for SRCC and PLCC also the
    mean with its corrected t CI (on Fisher's z scale: ``correlation_ci``), a bootstrap CI of the median and,
    against ``reference`` on the splits both were
    run on, the tests of ``paired_tests``, with the corrected p-values of the models in ``family`` (default: all
    tested) Holm-adjusted together."""
    grouped = per_split.groupby("model", sort=False)[METRICS]
    q1, med, q3 = grouped.quantile(0.25), grouped.median(), grouped.quantile(0.75)
    out = pd.DataFrame({"splits": grouped.size()})
    wide = {m: per_split.pivot(index="split", columns="model", values=m) for m in ("srcc", "plcc")}
    for m in METRICS:
        out[f"{m}_median"] = med[m]
        out[f"{m}_iqr"] = q3[m] - q1[m]
        if m not in wide:
            continue
        values = {model: wide[m][model].dropna().to_numpy() for model in out.index}
        ci = {model: bootstrap_ci(v, resamples, confidence, seed) for model, v in values.items()}
        out[f"{m}_ci_low"] = [ci[k][0] for k in out.index]
        out[f"{m}_ci_high"] = [ci[k][1] for k in out.index]
        out[f"{m}_mean"] = [v.mean() for v in values.values()]
        mean_cis = [correlation_ci(v, test_fraction, confidence) for v in values.values()]
        out[f"{m}_mean_ci_low"], out[f"{m}_mean_ci_high"] = [c[0] for c in mean_cis], [c[1] for c in mean_cis]
        if reference is not None:
            tests = pd.DataFrame({k: paired_tests(wide[m][k], wide[m][reference], test_fraction, confidence)
                                  for k in out.index if k != reference}).T
            tested = tests["p_corrected"].astype(float)
            tests["p_holm"] = holm(tested if family is None else tested[tested.index.isin(family)])
            for column in tests.columns:
                out[f"{m}_{column}_vs_{reference}"] = tests[column]
    return out.reset_index()


def summarise_finetuned(summary: pd.DataFrame, per_split: pd.DataFrame, reference: str, family: list[str],
                        test_fraction: float = 0.2, **bootstrap: Any) -> pd.DataFrame:
    """``summary`` (``summarise``) with the paired tests of the fine-tuned models ``family`` against the fine-tuned
    ``reference`` (columns ``*_vs_<reference>``, Holm-adjusted over ``family``; empty for the other models)."""
    tests = summarise(per_split[per_split["model"].isin([reference, *family])], reference, test_fraction, family,
                      **bootstrap)
    return summary.merge(tests[["model", *(c for c in tests if c.endswith(f"_vs_{reference}"))]], on="model",
                         how="left")


def to_markdown(summary: pd.DataFrame, title: str, reference: str | None = None,
                finetuned_reference: str | None = None) -> str:
    """Markdown: median (IQR) [bootstrap CI of the median] per metric and model, then, with ``reference``, each
    model's SRCC and PLCC difference from it (mean [corrected t CI], corrected, Holm and Wilcoxon p, wins, the
    smallest detectable difference), and the same for the fine-tuned models against ``finetuned_reference``
    (``summarise_finetuned``)."""
    def cell(r: pd.Series, m: str) -> str:
        text = f"{r[f'{m}_median']:.3f} ({r[f'{m}_iqr']:.3f})"
        return text + (f" [{r[f'{m}_ci_low']:.3f}, {r[f'{m}_ci_high']:.3f}]" if f"{m}_ci_low" in r else "")

    names = [m.upper() + (" median (IQR) [CI]" if f"{m}_ci_low" in summary else " median (IQR)") for m in METRICS]
    lines = [f"# {title}", "", "| model | splits | " + " | ".join(names) + " |", "|" + "---|" * (2 + len(METRICS))]
    for _, r in summary.iterrows():
        lines.append(f"| {r['model']} | {r['splits']} | " + " | ".join(cell(r, m) for m in METRICS) + " |")
    for ref in (r for r in (reference, finetuned_reference) if r and f"srcc_diff_vs_{r}" in summary):
        legend = ("Mean difference over the splits both ran on, [95% t CI with the Nadeau-Bengio corrected variance]; "
                  "p: corrected resampled t-test, Holm-adjusted over the student variants, Wilcoxon signed-rank; wins: "
                  "splits where the model is higher; MDE: the smallest mean difference the corrected test detects with "
                  "80% power at p < 0.05 on these splits.")
        lines += ["", f"## Against {ref}", "", legend, "",
                  "| model | metric | difference [CI] | p corrected | p Holm | p Wilcoxon | wins | MDE | note |",
                  "|" + "---|" * 9]
        tested = (summary["model"] != ref) & summary[f"srcc_diff_vs_{ref}"].notna()
        for _, r in summary[tested].iterrows():
            for m in ("srcc", "plcc"):
                v = {k: r[f"{m}_{k}_vs_{ref}"] for k in ("diff", "diff_ci_low", "diff_ci_high", "p_corrected",
                                                               "p_holm", "p_wilcoxon", "wins", "paired", "mde",
                                                               "too_few_splits")}
                note = f"{v['paired']} splits: Wilcoxon cannot reach p < 0.05" if v["too_few_splits"] else ""
                lines.append(f"| {r['model']} | {m.upper()} | {v['diff']:+.4f} [{v['diff_ci_low']:+.4f}, "
                             f"{v['diff_ci_high']:+.4f}] | {v['p_corrected']:.3f} | {v['p_holm']:.3f} | "
                             f"{v['p_wilcoxon']:.3f} | {int(v['wins'])}/{int(v['paired'])} | {v['mde']:.4f} | {note} |")
    return "\n".join(lines) + "\n"


def cross_summary(per_split: pd.DataFrame) -> pd.DataFrame:
    """Median and IQR of SRCC and PLCC over the training dataset's splits, per (train, test, model);
    rows with train == test are the in-dataset results (test parts of the same splits)."""
    grouped = per_split.groupby(["train", "test", "model"], sort=False)[["srcc", "plcc"]]
    q1, med, q3 = grouped.quantile(0.25), grouped.median(), grouped.quantile(0.75)
    out = pd.DataFrame({"splits": grouped.size()})
    for m in ("srcc", "plcc"):
        out[f"{m}_median"], out[f"{m}_iqr"] = med[m], q3[m] - q1[m]
    return out.reset_index()


def cross_markdown(table: pd.DataFrame, models: list[str], title: str) -> str:
    """One train x test matrix of median SRCC / PLCC per model (diagonal: in-dataset)."""
    trains = list(dict.fromkeys(table["train"]))
    tests = list(dict.fromkeys([*(t for t in trains if t in set(table["test"])), *table["test"]]))
    cells = table.set_index(["model", "train", "test"])
    legend = ("Rows: training dataset; columns: test dataset (all its images; the diagonal is the in-dataset "
              "test part). Median SRCC / PLCC over the training dataset's splits.")
    lines = [f"# {title}", "", legend, ""]
    for model in models:
        lines += [f"## {model}", "", "| train \\ test | " + " | ".join(tests) + " |", "|---" * (1 + len(tests)) + "|"]
        for train in trains:
            row = [f"{cells.at[(model, train, t), 'srcc_median']:.3f} / {cells.at[(model, train, t), 'plcc_median']:.3f}"
                   if (model, train, t) in cells.index else "-" for t in tests]
            lines.append(f"| {train} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def rule_of(path: Path, rules: list[str]) -> str:
    """The rule a benchmark file belongs to: the file is named ``<rule>[_<wildcards>].tsv`` or lies in a
    folder named after the rule (``unknown`` otherwise)."""
    longest_first = sorted(rules, key=len, reverse=True)
    for part in (path.stem, *reversed(path.parent.parts)):
        for rule in longest_first:
            if part == rule or part.startswith(f"{rule}_"):
                return rule
    return "unknown"


def benchmark_table(folder: str | Path, rules: list[str]) -> pd.DataFrame:
    """Per rule: jobs, total and median wall time (s), total CPU time (s) and the largest peak RSS (MB), to 0.1, from
    the Snakemake ``benchmark:`` files under ``folder``."""
    frames = []
    for path in sorted(Path(folder).rglob("*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        frames.append(bench.assign(rule=rule_of(path, rules), file=str(path)))
    if not frames:
        return pd.DataFrame(columns=["rule", "jobs", "total_s", "median_s", "cpu_s", "max_rss_mb"])
    runs = pd.concat(frames, ignore_index=True)
    for column in ("max_rss", "cpu_time"):
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    grouped = runs.groupby("rule")
    return pd.DataFrame({"jobs": grouped["file"].nunique(), "total_s": grouped["s"].sum(),
                         "median_s": grouped["s"].median(), "cpu_s": grouped["cpu_time"].sum(),
                         "max_rss_mb": grouped["max_rss"].max()}
                        ).round(1).sort_values("total_s", ascending=False).reset_index()
