"""The figure functions: one panel per space, model or metric; PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from conftest import summary_row

from qfm_iqm.evaluation import figures

STYLE = {"dpi": 40, "figsize": [3.0, 3.0], "marker_size": 4, "attention_images": 2}


def test_figures_draw_one_panel_per_space_model_or_metric(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sample = pd.DataFrame({"cosine_distance": rng.random(20), "score_gap": rng.random(20),
                           "kind": ["random", "nearest"] * 10})
    stats = {"large_gap": 0.2, "nn_fraction_large_gap": 0.3, "random_fraction_large_gap": 0.5}
    fig = figures.observation({"raw": sample, "gated": sample}, {"raw": stats, "gated": stats}, "t", STYLE)
    assert len(fig.axes) == 2
    summary = summary_row(0.8, (0.78, 0.83))
    fig = figures.ablation(pd.concat([summary, summary.assign(model="baseline"), summary.assign(model="gate", splits=3)]),
                           "baseline", "t", STYLE)
    assert len(fig.axes) == 2
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[-1] == "gate (3 splits)" and "splits" not in ticks[0]  # ablation.splits: fewer splits are named
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
