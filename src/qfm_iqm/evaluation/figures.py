"""Figures, one function per kind; every one takes the ``figures`` config section as its style.

Scatter of predictions, the motivating observation (raw and gated features), ablation bars with
bootstrap CIs (models run on fewer splits hatched, apart), semantic-noise sensitivity before/after and over a
sweep of eps and tau, and the cross-dataset heatmap. Every axis is labelled; legends are ``LEGEND_PT`` points.
(Attention maps are in ``qfm_iqm.evaluation.attention``.)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from qfm_iqm.evaluation.evaluate import metrics
from qfm_iqm.io import atomic_path

LEGEND_PT = 8  # legend text in points: legible at 100%
STABLE_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}  # formats that stamp the time


def save(fig: plt.Figure, outputs: list[str | Path], dpi: int) -> None:
    """Write ``fig`` to every output path (format from the suffix), atomically and byte-stable: a PDF
    carries no creation date, so redrawing the same figure rewrites the same bytes."""
    for out in outputs:
        fmt = Path(out).suffix.lstrip(".")
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight", metadata=STABLE_METADATA.get(fmt))
    plt.close(fig)


def scatter(predictions: pd.DataFrame, model: str, title: str, style: dict) -> plt.Figure:
    """Predicted vs normalised score over all test parts, one colour per split."""
    fig, ax = plt.subplots(figsize=style["figsize"])
    for split, part in predictions.groupby("split"):
        m = metrics(part["score"], part[model])
        ax.scatter(part["score"], part[model], s=style["marker_size"], alpha=0.6,
                   label=f"split {split}: SRCC {m['srcc']:.3f}, PLCC {m['plcc']:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="score (normalised)", ylabel=f"{model} prediction", title=f"{title}: {model} (test parts)")
    ax.legend(fontsize=LEGEND_PT, markerscale=2, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def _random_first(sample: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Pair kinds in drawing order: the many random pairs below, the nearest neighbours on top."""
    return sorted(sample.groupby("kind"), key=lambda item: item[0] != "random")


def pair_distance(sample: pd.DataFrame, title: str, style: dict) -> plt.Figure:
    """Semantic cosine distance against |score gap|: random pairs and nearest neighbours."""
    fig, ax = plt.subplots(figsize=style["figsize"])
    for kind, part in _random_first(sample):
        ax.scatter(part["cosine_distance"], part["score_gap"], s=style["marker_size"], alpha=0.5, label=kind)
    ax.set(xlabel="cosine distance of semantic features", ylabel="|score gap| (normalised)",
           title=f"{title}: near in feature space, far in quality")
    ax.legend(fontsize=LEGEND_PT)
    return fig


def observation(samples: dict[str, pd.DataFrame], stats: dict[str, dict], title: str, style: dict) -> plt.Figure:
    """The observation in two feature spaces (e.g. standardised vs gated): one panel per space."""
    width, height = style["figsize"]
    fig, axes = plt.subplots(1, len(samples), figsize=(width * len(samples), height), squeeze=False,
                             layout="constrained")
    for ax, (space, sample) in zip(axes[0], samples.items(), strict=True):
        for kind, part in _random_first(sample):
            ax.scatter(part["cosine_distance"], part["score_gap"], s=style["marker_size"], alpha=0.5, label=kind)
        s = stats[space]
        ax.set(xlabel="cosine distance", ylabel="|score gap| (normalised)",
               title=f"{space}\nNN gap > {s['large_gap']}: {s['nn_fraction_large_gap']:.1%} "
                     f"(random pairs {s['random_fraction_large_gap']:.1%})")
        ax.legend(fontsize=LEGEND_PT)
    fig.suptitle(f"{title}: near in feature space, far in quality")
    return fig


def _splits(n: int) -> str:
    return f"{n} split" if n == 1 else f"{n} splits"


def _hatch(n: int, most: int) -> str | None:
    """Bars of models run on fewer splits than the most are hatched."""
    return None if n == most else "//"


def _split_ticks(models: pd.Series, n: np.ndarray, most: int) -> list[str]:
    """Tick labels: a model run on fewer splits than the most says how many."""
    return [m if k == most else f"{m}\n({_splits(k)})" for m, k in zip(models, n, strict=True)]


def ablation_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The ablation figure's data, from ``evaluate.summarise``'s table: one row per metric (SRCC, PLCC) and model
    (model, metric, median, ci_low, ci_high, n_splits: the splits the model ran on), the models on the most splits
    first."""
    ordered = summary.sort_values("splits", ascending=False, kind="stable")
    return pd.concat([pd.DataFrame({"model": ordered["model"], "metric": m, "median": ordered[f"{m}_median"],
                                    "ci_low": ordered[f"{m}_ci_low"], "ci_high": ordered[f"{m}_ci_high"],
                                    "n_splits": ordered["splits"]}) for m in ("srcc", "plcc")], ignore_index=True)


def ablation(table: pd.DataFrame, reference: str, title: str, style: dict) -> plt.Figure:
    """Bars of ``ablation_table``: one panel per metric, the median per model with the bootstrap CI of the median as
    error bars. Models run on fewer splits than the most are hatched, right of a dashed line, their split count in
    the tick label and the legend; the y-axis spans every error bar."""
    most = table["n_splits"].max()
    width, height = style["figsize"]
    panels = table.groupby("metric", sort=False)
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * width, height), layout="constrained")
    for ax, (metric, rows) in zip(axes, panels, strict=True):
        x, n = np.arange(len(rows)), rows["n_splits"].to_numpy()
        med = rows["median"].to_numpy()
        ax.bar(x, med, yerr=np.vstack([med - rows["ci_low"], rows["ci_high"] - med]), capsize=3,
               color=["tab:orange" if m == reference else "tab:blue" for m in rows["model"]],
               hatch=[_hatch(k, most) for k in n], edgecolor="black", linewidth=0.5)
        ax.set_xticks(x, _split_ticks(rows["model"], n, most), rotation=45, ha="right")
        if (n < most).any():
            ax.axvline((n == most).sum() - 0.5, color="grey", ls="--", lw=0.8)
        low, high = np.nanmin([rows["ci_low"], med]), np.nanmax([rows["ci_high"], med])
        margin = max(0.05 * (high - low), 0.01)
        ax.set(ylim=(low - margin, high + margin), xlabel="model", title=metric.upper(),
               ylabel=f"{metric.upper()} (median, 95% CI)")
    handles = [Patch(facecolor="tab:blue", edgecolor="black", hatch=_hatch(k, most),
                     label=f"median of {_splits(k)}" if k > 1 else "1 split: its value, no CI")
               for k in sorted(set(table["n_splits"]), reverse=True)]
    handles.append(Patch(facecolor="tab:orange", label=f"{reference}: reference of the corrected t-tests"))
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=LEGEND_PT)
    fig.suptitle(f"{title}: ablation")
    return fig


def sensitivity_bars(sensitivity: pd.DataFrame, title: str, style: dict) -> plt.Figure:
    """Semantic-noise sensitivity per model (median over its ``splits``): prediction shift and quality-dissimilar
    nearest neighbours; models run on fewer splits than the most are hatched and say how many."""
    width, height = style["figsize"]
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, height), layout="constrained")
    x, n = np.arange(len(sensitivity)), sensitivity["splits"].to_numpy()
    most = n.max()
    panels = [("relative_shift", "prediction shift / spread of predictions"),
              ("nn_fraction_large_gap", "share of nearest neighbours (head's input)\nwith a large score gap")]
    for ax, (column, label) in zip(axes, panels, strict=True):
        ax.bar(x, sensitivity[column], hatch=[_hatch(k, most) for k in n], edgecolor="black", linewidth=0.5)
        ax.set_xticks(x, _split_ticks(sensitivity["model"], n, most), rotation=45, ha="right")
        ax.set(xlabel="model", ylabel=label)
    fig.suptitle(f"{title}: semantic-noise sensitivity (eps = {sensitivity['eps'].iloc[0]}), median over splits")
    return fig


def sensitivity_sweep(sweep: pd.DataFrame, tau: float, eps: float, title: str, style: dict) -> plt.Figure:
    """Relative prediction shift against eps (at the configured tau) and against tau (at the configured eps)."""
    med = sweep.groupby(["model", "tau", "eps"], sort=False)["relative_shift"].median().reset_index()
    width, height = style["figsize"]
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, height), sharey=True, layout="constrained")
    for ax, fixed, value, free in ((axes[0], "tau", tau, "eps"), (axes[1], "eps", eps, "tau")):
        for model, part in med[np.isclose(med[fixed], value)].groupby("model", sort=False):
            part = part.sort_values(free)
            ax.plot(part[free], part["relative_shift"], marker="o", ms=3, label=model)
        ax.set(xlabel=free, title=f"{fixed} = {value}")
    axes[0].set_ylabel("prediction shift / spread (median over splits)")
    axes[1].set_xscale("log")
    axes[0].legend(fontsize=LEGEND_PT)
    fig.suptitle(f"{title}: sensitivity to semantic noise of strength eps from partners within tau")
    return fig


def cross_heatmap(table: pd.DataFrame, models: list[str], title: str, style: dict) -> plt.Figure:
    """Median SRCC per (train, test) dataset, one heatmap per model (diagonal: in-dataset)."""
    names = list(dict.fromkeys([*table["train"], *table["test"]]))
    width, height = style["figsize"]
    fig, axes = plt.subplots(1, len(models), figsize=(width * len(models), height), squeeze=False,
                             layout="constrained")
    for ax, model in zip(axes[0], models, strict=True):
        grid = (table[table["model"] == model].pivot(index="train", columns="test", values="srcc_median")
                .reindex(index=[n for n in names if n in set(table["train"])], columns=names))
        image = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=45, ha="right")
        ax.set_yticks(range(len(grid.index)), grid.index)
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w" if value < 0.6 else "k")
        ax.set(xlabel="test dataset", ylabel="training dataset", title=model)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="median SRCC")
    fig.suptitle(title)
    return fig
