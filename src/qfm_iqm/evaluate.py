"""Evaluation: correlation metrics per split, the ridge floor, and median/IQR summaries."""

from __future__ import annotations

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


def summarise(per_split: pd.DataFrame) -> pd.DataFrame:
    """Median and inter-quartile range of every metric per model over splits."""
    grouped = per_split.groupby("model", sort=False)[METRICS]
    q1, med, q3 = grouped.quantile(0.25), grouped.median(), grouped.quantile(0.75)
    out = pd.DataFrame({"splits": grouped.size()})
    for m in METRICS:
        out[f"{m}_median"] = med[m]
        out[f"{m}_iqr"] = q3[m] - q1[m]
    return out.reset_index()


def to_markdown(summary: pd.DataFrame, title: str) -> str:
    """A Markdown table of median (IQR) per metric."""
    header = "| model | splits | " + " | ".join(f"{m.upper()} median (IQR)" for m in METRICS) + " |"
    lines = [f"# {title}", "", header, "|" + "---|" * (2 + len(METRICS))]
    for _, r in summary.iterrows():
        cells = [f"{r[f'{m}_median']:.3f} ({r[f'{m}_iqr']:.3f})" for m in METRICS]
        lines.append(f"| {r['model']} | {r['splits']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
