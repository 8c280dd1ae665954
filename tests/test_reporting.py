"""The paper comparison's verdicts, the benchmark table, and the figure functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qfm_iqm.evaluation import comparison, figures
from qfm_iqm.evaluation.evaluate import benchmark_table, rule_of

STYLE = {"dpi": 40, "figsize": [3.0, 3.0], "marker_size": 4, "attention_images": 2}


def _summary(srcc: float, ci: tuple[float, float]) -> pd.DataFrame:
    return pd.DataFrame([{"model": "full", "splits": 10, "srcc_median": srcc, "srcc_iqr": 0.03, "srcc_ci_low": 0.0,
                          "srcc_ci_high": 1.0, "srcc_mean_ci_low": ci[0], "srcc_mean_ci_high": ci[1],
                          "plcc_median": 0.84, "plcc_iqr": 0.02, "plcc_ci_low": 0.0, "plcc_ci_high": 1.0,
                          "plcc_mean_ci_low": 0.82, "plcc_mean_ci_high": 0.85}])


def test_verdicts_follow_the_declared_tolerance_and_the_ci() -> None:
    assert comparison.verdict(0.90, 0.885, (0.85, 0.92), 0.02) == "match"
    assert comparison.verdict(0.90, 0.86, (0.85, 0.91), 0.02) == "within CI"
    assert comparison.verdict(0.90, 0.80, (0.78, 0.83), 0.02) == "miss"
    assert comparison.verdict(None, 0.80, (0.78, 0.83), 0.02) == "no paper value"


def test_comparison_has_one_row_per_published_cell_and_keeps_unknowns_unknown() -> None:
    published = {"livec": {"srcc": 0.891, "plcc": 0.913}, "live": {"srcc": None, "plcc": None},
                 "koniq10k": {"srcc": 0.922, "plcc": None}}
    runs = [{"name": "livec", "kind": "livec", "model": "full", "backbone": "lite0", "mode": "frozen features"},
            {"name": "livec_g", "kind": "livec", "model": "full", "backbone": "lite0", "mode": "frozen features"}]
    summaries = {"livec": _summary(0.805, (0.785, 0.834)), "livec_g": _summary(0.880, (0.86, 0.90))}
    table = comparison.compare(published, "method.md", 0.02, runs, summaries)
    rows = {(r.dataset, r.metric, r.run if isinstance(r.run, str) else ""): r for r in table.itertuples()}
    assert rows[("livec", "srcc", "livec")].verdict == "miss"
    assert rows[("livec", "srcc", "livec")].delta == pytest.approx(0.805 - 0.891)
    assert rows[("livec", "srcc", "livec_g")].verdict == "match"
    assert rows[("livec", "srcc", "livec")].ci_low == 0.785  # the t CI of the mean, not the bootstrap CI of the median
    assert rows[("livec", "plcc", "livec")].verdict == "miss" and rows[("livec", "plcc", "livec")].ours_median == 0.84
    assert rows[("live", "srcc", "")].verdict == "no paper value" and np.isnan(rows[("live", "srcc", "")].paper)
    assert rows[("koniq10k", "srcc", "")].verdict == "not run"
    assert rows[("koniq10k", "plcc", "")].verdict == "no paper value"
    assert len(table) == 2 * 2 + 2 + 2
    markdown = comparison.to_markdown(table)
    assert "| livec | SRCC | 0.891 | 0.805 | 0.030 | [0.785, 0.834] | -0.086 | 0.020 | **miss** |" in markdown


def test_benchmark_table_groups_jobs_by_rule(tmp_path: Path) -> None:
    rules = ["train_student", "train_teacher", "evaluate_cross", "extract_features"]
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    files = {"ds/split0/train_student_full.tsv": 2.0, "ds/split1/train_student_baseline.tsv": 4.0,
             "ds/split0/train_teacher.tsv": 1.0, "cross_dataset/a/b/evaluate_cross_split0.tsv": 0.5,
             "ds/extract_features/lite0_c5s224r0_pool.tsv": 9.0}
    for name, seconds in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(header + f"{seconds}\t0:00:0{int(seconds)}\t{100 * seconds}\t1\t1\t1\t0\t0\t0\t1\n")
    assert rule_of(Path("x/extract_features/lite0_c5.tsv"), rules) == "extract_features"
    table = benchmark_table(tmp_path, rules).set_index("rule")
    assert table.loc["train_student", "jobs"] == 2 and table.loc["train_student", "total_s"] == 6.0
    assert table.loc["train_student", "median_s"] == 3.0 and table.loc["train_student", "max_rss_mb"] == 400.0
    assert set(table.index) == {"train_student", "train_teacher", "evaluate_cross", "extract_features"}
    assert table.index[0] == "extract_features"  # sorted by total time


def test_figures_draw_one_panel_per_space_model_or_metric(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sample = pd.DataFrame({"cosine_distance": rng.random(20), "score_gap": rng.random(20),
                           "kind": ["random", "nearest"] * 10})
    stats = {"large_gap": 0.2, "nn_fraction_large_gap": 0.3, "random_fraction_large_gap": 0.5}
    fig = figures.observation({"raw": sample, "gated": sample}, {"raw": stats, "gated": stats}, "t", STYLE)
    assert len(fig.axes) == 2
    summary = _summary(0.8, (0.78, 0.83))
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
