"""Evaluation: correlation metrics per split, the ridge floor, and median/IQR summaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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


def summarise(per_split: pd.DataFrame, reference: str | None = None, resamples: int = 2000,
              confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Median and inter-quartile range of every metric per model over splits; for SRCC and PLCC
    also a bootstrap CI of the median and, against ``reference`` on the same splits, a paired
    Wilcoxon p-value and the number of splits where the model is higher, over the splits both were run on."""
    grouped = per_split.groupby("model", sort=False)[METRICS]
    q1, med, q3 = grouped.quantile(0.25), grouped.median(), grouped.quantile(0.75)
    out = pd.DataFrame({"splits": grouped.size()})
    wide = {m: per_split.pivot(index="split", columns="model", values=m) for m in ("srcc", "plcc")}
    for m in METRICS:
        out[f"{m}_median"] = med[m]
        out[f"{m}_iqr"] = q3[m] - q1[m]
        if m not in wide:
            continue
        ci = {model: bootstrap_ci(wide[m][model].dropna().to_numpy(), resamples, confidence, seed)
              for model in out.index}
        out[f"{m}_ci_low"] = [ci[k][0] for k in out.index]
        out[f"{m}_ci_high"] = [ci[k][1] for k in out.index]
        if reference is not None:
            ref = wide[m][reference]
            paired = {k: (wide[m][k][both], ref[both]) for k in out.index
                      for both in [wide[m][k].notna() & ref.notna()]}  # the splits both models were run on
            out[f"{m}_p_vs_{reference}"] = [paired_wilcoxon(a, b) for a, b in paired.values()]
            out[f"{m}_wins_vs_{reference}"] = [int((a > b).sum()) for a, b in paired.values()]
    return out.reset_index()


def to_markdown(summary: pd.DataFrame, title: str, reference: str | None = None) -> str:
    """A Markdown table of median (IQR) per metric, with the CI and p-value columns when present."""
    def cell(r: pd.Series, m: str) -> str:
        text = f"{r[f'{m}_median']:.3f} ({r[f'{m}_iqr']:.3f})"
        if f"{m}_ci_low" in r:
            text += f" [{r[f'{m}_ci_low']:.3f}, {r[f'{m}_ci_high']:.3f}]"
        if reference is not None and f"{m}_p_vs_{reference}" in r:
            text += f" p={r[f'{m}_p_vs_{reference}']:.3f} ({r[f'{m}_wins_vs_{reference}']}/{r['splits']})"
        return text

    names = [m.upper() + (" median (IQR) [CI]" + (f" p vs {reference} (wins)" if reference else "")
                          if f"{m}_ci_low" in summary else " median (IQR)") for m in METRICS]
    lines = [f"# {title}", "", "| model | splits | " + " | ".join(names) + " |", "|" + "---|" * (2 + len(METRICS))]
    for _, r in summary.iterrows():
        lines.append(f"| {r['model']} | {r['splits']} | " + " | ".join(cell(r, m) for m in METRICS) + " |")
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
    """Per rule: jobs, total and median wall time (s) and the largest peak RSS (MB), from the
    Snakemake ``benchmark:`` files under ``folder``."""
    frames = []
    for path in sorted(Path(folder).rglob("*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        frames.append(bench.assign(rule=rule_of(path, rules), file=str(path)))
    if not frames:
        return pd.DataFrame(columns=["rule", "jobs", "total_s", "median_s", "max_rss_mb"])
    runs = pd.concat(frames, ignore_index=True)
    runs["max_rss"] = pd.to_numeric(runs["max_rss"], errors="coerce")
    grouped = runs.groupby("rule")
    return pd.DataFrame({"jobs": grouped["file"].nunique(), "total_s": grouped["s"].sum(),
                         "median_s": grouped["s"].median(), "max_rss_mb": grouped["max_rss"].max()}
                        ).sort_values("total_s", ascending=False).reset_index()
