"""Figures: predicted-vs-score scatter per model, and feature distance vs score gap of pairs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from qfm_iqm.evaluate import metrics
from qfm_iqm.io import atomic_path


def save(fig: plt.Figure, outputs: list[str | Path], dpi: int) -> None:
    """Write ``fig`` to every output path (format from the suffix), atomically."""
    for out in outputs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=dpi, format=Path(out).suffix.lstrip("."), bbox_inches="tight")
    plt.close(fig)


def scatter(predictions: pd.DataFrame, model: str, title: str, style: dict) -> plt.Figure:
    """Predicted vs normalised score over all test parts, one colour per split."""
    fig, ax = plt.subplots(figsize=style["figsize"])
    for split, part in predictions.groupby("split"):
        ax.scatter(part["score"], part[model], s=style["marker_size"], alpha=0.6, label=f"split {split}")
    m = metrics(predictions["score"], predictions[model])
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="score (normalised)", ylabel=f"{model} prediction",
           title=f"{title}: {model}\nSRCC {m['srcc']:.3f}, PLCC {m['plcc']:.3f} (pooled test parts)")
    if predictions["split"].nunique() <= 10:
        ax.legend(fontsize="x-small", markerscale=2)
    return fig


def pair_distance(sample: pd.DataFrame, title: str, style: dict) -> plt.Figure:
    """Semantic cosine distance against |score gap|: random pairs and nearest neighbours."""
    fig, ax = plt.subplots(figsize=style["figsize"])
    for kind, part in sample.groupby("kind"):
        ax.scatter(part["cosine_distance"], part["score_gap"], s=style["marker_size"], alpha=0.5, label=kind)
    ax.set(xlabel="cosine distance of semantic features", ylabel="|score gap| (normalised)",
           title=f"{title}: near in feature space, far in quality")
    ax.legend()
    return fig
