"""Evaluation on constructed data: metrics, the summary and its tests, the ridge floor, the benchmark table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import toy_data
from scipy import stats

from qfm_iqm.evaluation import evaluate
from qfm_iqm.evaluation.evaluate import benchmark_table, rule_of


def test_metrics_summary_and_ridge() -> None:
    s = np.linspace(0, 1, 20)
    m = evaluate.metrics(s, s ** 2)
    assert m["srcc"] == pytest.approx(1.0) and m["krcc"] == pytest.approx(1.0) and m["plcc"] < 1.0
    a = pd.DataFrame({"model": "a", "split": range(8), "srcc": np.linspace(0.1, 0.8, 8), "plcc": 0.5, "krcc": 0.5,
                      "rmse": 0.1})
    b = a.assign(model="b", srcc=a["srcc"] + 0.05)
    c = a.assign(model="c", srcc=a["srcc"] + [0.01, -0.01] * 4)
    summary = evaluate.summarise(pd.concat([a, b, c]), reference="a", resamples=500).set_index("model")
    assert summary.loc["a", "srcc_median"] == pytest.approx(0.45) and summary.loc["a", "srcc_iqr"] == pytest.approx(0.35)
    assert summary.loc["a", "srcc_ci_low"] < 0.45 < summary.loc["a", "srcc_ci_high"]
    assert summary.loc["a", "plcc_ci_low"] == summary.loc["a", "plcc_ci_high"] == 0.5  # no spread, no interval
    # b beats a on all 8 splits: the exact two-sided signed-rank p is 2 / 2**8; c is a coin toss
    assert summary.loc["b", "srcc_p_wilcoxon_vs_a"] == pytest.approx(2 / 2 ** 8) and summary.loc["b", "srcc_wins_vs_a"] == 8
    assert summary.loc["c", "srcc_p_wilcoxon_vs_a"] > 0.5 and np.isnan(summary.loc["a", "srcc_p_corrected_vs_a"])
    assert summary.loc["b", "srcc_diff_vs_a"] == pytest.approx(0.05) and summary.loc["b", "srcc_p_corrected_vs_a"] < 1e-10
    table = evaluate.to_markdown(summary.reset_index(), "t", reference="a")
    assert "| b | 8 | 0.500 (0.350) [" in table and "| b | SRCC | +0.0500 [+0.0500, +0.0500] |" in table
    # a model run on 6 of the splits (ablation.splits) is tested against the reference on those 6
    d = b.iloc[:6].assign(model="d")
    summary = evaluate.summarise(pd.concat([a, d]), reference="a", resamples=500).set_index("model")
    assert summary.loc["d", "splits"] == 6 and summary.loc["d", "srcc_wins_vs_a"] == 6
    assert summary.loc["d", "srcc_p_wilcoxon_vs_a"] == pytest.approx(2 / 2 ** 6)
    assert not summary.loc["d", "srcc_too_few_splits_vs_a"]
    x, y = toy_data(200)
    pred = evaluate.ridge_floor(x[:150], y[:150], x[150:], [0.1, 1.0])
    assert evaluate.metrics(y[150:], pred)["srcc"] > 0.8


def test_fine_tuned_models_are_tested_against_the_fine_tuned_baseline() -> None:
    """The fine-tuned models' own reference: their rows get the ``*_vs_finetune_baseline`` tests and summary.md a second
    table, while every model keeps its test against the ablation's reference."""
    base = pd.DataFrame({"model": "baseline", "split": range(6), "srcc": np.linspace(0.5, 0.7, 6), "plcc": 0.6,
                         "krcc": 0.5, "rmse": 0.1})
    runs = pd.concat([base, base.assign(model="full", srcc=base["srcc"] + 0.01),
                      base.assign(model="finetune_baseline", srcc=base["srcc"] + 0.1),
                      base.assign(model="finetune", srcc=base["srcc"] + 0.13)])
    summary = evaluate.summarise(runs, "baseline", 0.2, ["full"], resamples=200)
    summary = evaluate.summarise_finetuned(summary, runs, "finetune_baseline", ["finetune"], 0.2, resamples=200)
    tests = summary.set_index("model")
    assert tests.loc["finetune", "srcc_diff_vs_finetune_baseline"] == pytest.approx(0.03)
    assert tests.loc["finetune", "srcc_diff_vs_baseline"] == pytest.approx(0.13)
    assert tests["srcc_diff_vs_finetune_baseline"].notna().sum() == 1  # the frozen students are not in that family
    table = evaluate.to_markdown(summary, "t", "baseline", "finetune_baseline")
    against = table.split("## Against finetune_baseline")[1]
    assert "| finetune | SRCC | +0.0300 [" in against and "| full |" not in against
    assert "| full | SRCC | +0.0100 [" in table.split("## Against baseline")[1]


def test_corrected_resampled_t_test_allows_for_overlapping_training_parts() -> None:
    d = np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    # Nadeau and Bengio: var (1/J + n_test/n_train) s^2, here (1/5 + 0.2/0.8); t = 0.03 / 0.010607 = 2.828 on 4 df
    assert evaluate.corrected_ttest(d, 0.2) == pytest.approx(0.0474, abs=5e-4)
    assert stats.ttest_1samp(d, 0).pvalue == pytest.approx(0.0132, abs=5e-4)  # the plain test: too optimistic
    # without the overlap term the corrected test and CI are the plain one-sample t-test and t interval
    assert evaluate.corrected_ttest(d, 1e-12) == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    plain = stats.t.interval(0.9, 4, loc=d.mean(), scale=stats.sem(d))
    assert evaluate.mean_ci(d, 1e-12, 0.9) == pytest.approx(plain)
    low, high = evaluate.mean_ci(d, 0.2, 0.9)
    assert low < plain[0] and high > plain[1] and (low + high) / 2 == pytest.approx(0.03)
    assert np.isnan(evaluate.corrected_ttest(d[:1], 0.2)) and evaluate.corrected_ttest(np.zeros(4), 0.2) == 1.0


def test_correlation_intervals_stay_inside_minus_one_one() -> None:
    """Spread-out per-split correlations: the corrected t interval of their plain mean leaves [-1, 1], the one on
    Fisher's z scale (summarise's mean CI, the headline's) does not."""
    r = np.array([0.95, -0.3, 0.9, 0.1, 0.85, -0.5])
    plain = evaluate.mean_ci(r, 0.2)
    assert plain[0] < -1 or plain[1] > 1
    low, high = evaluate.correlation_ci(r, 0.2)
    assert -1 < low < r.mean() < high < 1
    z = np.arctanh(r)  # the corrected t interval on the z scale, back through tanh
    assert (low, high) == pytest.approx(tuple(np.tanh(evaluate.mean_ci(z, 0.2))))
    per_split = pd.DataFrame({"model": "a", "split": range(6), "srcc": r, "plcc": r[::-1], "krcc": r, "rmse": 0.1})
    row = evaluate.summarise(per_split, resamples=200).iloc[0]
    for m in ("srcc", "plcc"):
        assert -1 < row[f"{m}_mean_ci_low"] < row[f"{m}_mean"] < row[f"{m}_mean_ci_high"] < 1
    assert np.isnan(evaluate.correlation_ci(r[:1], 0.2)[0]) and evaluate.correlation_ci(np.ones(3), 0.2)[1] <= 1


def test_smallest_detectable_effect_and_too_few_splits() -> None:
    d = np.random.default_rng(0).normal(0, 0.02, 400)
    s = d.std(ddof=1)
    # many independent splits: the normal approximation (z_0.975 + z_0.8) s / sqrt(J)
    assert evaluate.detectable_effect(d, 1e-12) == pytest.approx(2.8016 * s / np.sqrt(400), rel=0.01)
    # the overlap term widens it by sqrt((1/J + 1/4) / (1/J)) at a 20% test part
    assert evaluate.detectable_effect(d, 0.2) == pytest.approx(2.8016 * s * np.sqrt(1 / 400 + 0.25), rel=0.01)
    few = d[:5]
    assert evaluate.detectable_effect(few, 0.2) > 2.8016 * few.std(ddof=1) * np.sqrt(1 / 5 + 0.25)  # t, not z
    assert evaluate.min_wilcoxon_p(5) == 0.0625 and evaluate.min_wilcoxon_p(6) == 0.03125


def test_holm_steps_down_from_the_smallest_p_value() -> None:
    p = pd.Series([0.01, 0.04, 0.03, 0.005, np.nan], index=list("abcde"))
    adjusted = evaluate.holm(p)
    # sorted 0.005 x 4, 0.01 x 3, 0.03 x 2, 0.04 x 1, each at least the one before: 0.02, 0.03, 0.06, 0.06
    assert adjusted[list("abcd")].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted["e"]) and evaluate.holm(pd.Series([0.6, 0.7])).tolist() == [1.0, 1.0]


def test_benchmark_table_groups_jobs_by_rule(tmp_path: Path) -> None:
    rules = ["train_student", "train_teacher", "evaluate_cross", "extract_features"]
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    files = {"ds/split0/train_student_full.tsv": 2.0, "ds/split1/train_student_baseline.tsv": 4.0,
             "ds/split0/train_teacher.tsv": 1.0, "cross_dataset/a/b/evaluate_cross_split0.tsv": 0.5,
             "ds/extract_features/lite0_c5s224r0_pool.tsv": 9.0}
    for name, seconds in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(header + f"{seconds}\t0:00:0{int(seconds)}\t{100 * seconds}\t1\t1\t1\t0\t0\t0\t"
                                              f"{seconds / 2}\n")
    assert rule_of(Path("x/extract_features/lite0_c5.tsv"), rules) == "extract_features"
    table = benchmark_table(tmp_path, rules).set_index("rule")
    assert table.loc["train_student", "jobs"] == 2 and table.loc["train_student", "total_s"] == 6.0
    assert table.loc["train_student", "median_s"] == 3.0 and table.loc["train_student", "max_rss_mb"] == 400.0
    assert table.loc["train_student", "cpu_s"] == 3.0
    assert set(table.index) == {"train_student", "train_teacher", "evaluate_cross", "extract_features"}
    assert table.index[0] == "extract_features"  # sorted by total time


def test_the_detectable_effect_of_a_spread_at_other_numbers_of_splits() -> None:
    d = np.random.default_rng(1).normal(0.01, 0.02, 30)
    sd = float(d.std(ddof=1))
    assert evaluate.detectable_effect_at(sd, 30, 0.2) == pytest.approx(evaluate.detectable_effect(d, 0.2), rel=1e-9)
    at10, at30 = evaluate.detectable_effect_at(sd, 10, 0.2), evaluate.detectable_effect_at(sd, 30, 0.2)
    assert at30 < at10 < 1.3 * at30  # with 80/20 splits more splits barely help: n_test/n_train stays
    assert evaluate.detectable_effect_at(sd / 2, 30, 0.2) == pytest.approx(at30 / 2, rel=1e-6)  # halving the spread does
