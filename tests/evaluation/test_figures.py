"""The figure functions: one panel per space, model or metric; labelled axes, legible legends; PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from conftest import summary_row
from matplotlib import pyplot as plt

from qfm_iqm.evaluation import figures

# an ablation summary: (model, splits, SRCC median, CI low, CI high); gate ran on one split and scored below 0
ABLATION = [("baseline", 3, 0.78, 0.74, 0.80), ("gate", 1, -0.05, -0.05, -0.05), ("full", 3, 0.80, 0.77, 0.83),
            ("matching", 2, 0.70, 0.60, 0.72)]

STYLE = {"dpi": 40, "figsize": [3.0, 3.0], "marker_size": 4, "attention_images": 2}


def test_figures_draw_one_panel_per_space_model_or_metric(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sample = pd.DataFrame({"cosine_distance": rng.random(20), "score_gap": rng.random(20),
                           "kind": ["random", "nearest"] * 10})
    stats = {"large_gap": 0.2, "nn_fraction_large_gap": 0.3, "random_fraction_large_gap": 0.5}
    fig = figures.observation({"raw": sample, "gated": sample}, {"raw": stats, "gated": stats}, "t", STYLE)
    assert len(fig.axes) == 2
    sweep = pd.DataFrame([{"model": m, "tau": t, "eps": e, "relative_shift": e * (2 if m == "baseline" else 1),
                           "split": s} for m in ("baseline", "full") for t in (0.03, 0.1) for e in (0.1, 0.3)
                          for s in (0, 1)])
    fig = figures.sensitivity_sweep(sweep, 0.03, 0.3, "t", STYLE)
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.2, 0.6])  # baseline over eps at tau 0.03
    cross = pd.DataFrame([{"train": a, "test": b, "model": m, "srcc_median": 0.5} for a, b in (("x", "y"), ("x", "x"))
                          for m in ("full", "ridge")])
    fig = figures.cross_heatmap(cross, ["full", "ridge"], "t", STYLE)
    assert len(fig.axes) == 3  # two heatmaps and the colour bar
    figures.save(fig, [tmp_path / "h.png", tmp_path / "h.pdf"], 40)
    assert (tmp_path / "h.png").stat().st_size > 0 and (tmp_path / "h.pdf").stat().st_size > 0


def _ablation_summary() -> pd.DataFrame:
    return pd.concat([summary_row(med, (lo, hi)).assign(model=m, splits=n, srcc_median=med, srcc_ci_low=lo,
                                                         srcc_ci_high=hi) for m, n, med, lo, hi in ABLATION])


def test_ablation_draws_variants_on_fewer_splits_apart_hatched_and_labelled() -> None:
    table = figures.ablation_table(_ablation_summary())
    assert list(table.columns) == ["model", "metric", "median", "ci_low", "ci_high", "n_splits"]
    srcc = table[table["metric"] == "srcc"]
    assert list(zip(srcc["model"], srcc["n_splits"], strict=True)) == [("baseline", 3), ("full", 3), ("matching", 2),
                                                                        ("gate", 1)]  # most splits first
    assert srcc.loc[srcc["model"] == "matching", ["median", "ci_low", "ci_high"]].to_numpy().tolist() == [[0.7, 0.6, 0.72]]
    fig = figures.ablation(table, "baseline", "t", STYLE)
    for ax, metric in zip(fig.axes, ("SRCC", "PLCC"), strict=True):
        assert [bar.get_hatch() for bar in ax.patches] == [None, None, "//", "//"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["baseline", "full", "matching\n(2 splits)",
                                                                  "gate\n(1 split)"]
        assert ax.get_ylabel().startswith(metric) and ax.get_xlabel() == "model"
        (whiskers,) = ax.collections  # the error bars
        ends = np.concatenate([seg[:, 1] for seg in whiskers.get_segments()])
        low, high = ax.get_ylim()
        assert low < ends.min() and ends.max() < high  # no error bar clipped (gate's reaches below 0)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()][:3] == ["median of 3 splits", "median of 2 splits",
                                                              "1 split: its value, no CI"]
    assert [patch.get_hatch() for patch in legend.get_patches()][:3] == [None, "//", "//"]
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 8


def _unlabelled(fig: plt.Figure) -> list[str]:
    """Titles of the panels without an x or y label (a panel sharing y with a labelled one is labelled) and of
    colour bars without a label."""
    def labelled(ax: plt.Axes) -> bool:
        if ax.get_label() == "<colorbar>":
            return bool(ax.get_ylabel() or ax.get_xlabel())
        return bool(ax.get_xlabel()) and any(a.get_ylabel() for a in ax.get_shared_y_axes().get_siblings(ax))

    return [ax.get_title() for ax in fig.axes if not labelled(ax)]


def test_every_axis_is_labelled_and_every_legend_legible() -> None:
    rng = np.random.default_rng(0)
    preds = pd.DataFrame({"split": np.repeat([0, 1], 10), "score": rng.random(20), "full": rng.random(20)})
    sample = pd.DataFrame({"cosine_distance": rng.random(20), "score_gap": rng.random(20),
                           "kind": ["random", "nearest"] * 10})
    stats = {"large_gap": 0.2, "nn_fraction_large_gap": 0.3, "random_fraction_large_gap": 0.5}
    sensitivity = pd.DataFrame({"model": ["baseline", "full", "gate"], "relative_shift": [0.2, 0.1, 0.15],
                                "nn_fraction_large_gap": [0.3, 0.2, 0.25], "eps": 0.3, "splits": [3, 3, 1]})
    sweep = pd.DataFrame([{"model": m, "tau": t, "eps": e, "relative_shift": e} for m in ("baseline", "full")
                          for t in (0.03, 0.1) for e in (0.1, 0.3)])
    cross = pd.DataFrame([{"train": "x", "test": t, "model": "full", "srcc_median": 0.5} for t in ("x", "y")])
    drawn = {"scatter": figures.scatter(preds, "full", "t", STYLE),
             "pairs": figures.pair_distance(sample, "t", STYLE),
             "observation": figures.observation({"raw": sample}, {"raw": stats}, "t", STYLE),
             "ablation": figures.ablation(figures.ablation_table(_ablation_summary()), "baseline", "t", STYLE),
             "sensitivity": figures.sensitivity_bars(sensitivity, "t", STYLE),
             "sweep": figures.sensitivity_sweep(sweep, 0.03, 0.3, "t", STYLE),
             "cross": figures.cross_heatmap(cross, ["full"], "t", STYLE)}
    assert {name: _unlabelled(fig) for name, fig in drawn.items()} == {name: [] for name in drawn}
    for ax in drawn["sensitivity"].axes:  # a model run on fewer splits is marked, as in the ablation figure
        assert [bar.get_hatch() for bar in ax.patches] == [None, None, "//"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["baseline", "full", "gate\n(1 split)"]
    legends = {name: [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
               for name, fig in drawn.items()}
    assert {name: min(t.get_fontsize() for lg in lgs for t in lg.get_texts()) >= 8 for name, lgs in legends.items()
            if lgs} == dict.fromkeys(["scatter", "pairs", "observation", "ablation", "sweep"], True)
