"""The paper comparison's verdicts and its table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import summary_row

from qfm_iqm.evaluation import comparison


def test_verdicts_follow_the_declared_tolerance_and_the_ci() -> None:
    assert comparison.verdict(0.90, 0.885, (0.85, 0.92), 0.02) == "match"
    assert comparison.verdict(0.90, 0.86, (0.85, 0.91), 0.02) == "within CI"
    assert comparison.verdict(0.90, 0.80, (0.78, 0.83), 0.02) == "miss"
    assert comparison.verdict(None, 0.80, (0.78, 0.83), 0.02) == "no paper value"


def test_comparison_has_one_row_per_published_cell_and_keeps_unknowns_unknown() -> None:
    published = {"livec": {"srcc": 0.891, "plcc": 0.913}, "live": {"srcc": None, "plcc": None},
                 "koniq10k": {"srcc": 0.922, "plcc": None}}
    runs = [{"name": "livec", "kind": "livec", "model": "full", "paper_model": "QFM-IQM", "backbone": "lite0",
             "mode": "frozen features"},
            {"name": "livec_g", "kind": "livec", "model": "full", "paper_model": "QFM-IQM", "backbone": "lite0",
             "mode": "frozen features"}]
    summaries = {"livec": summary_row(0.805, (0.785, 0.834)), "livec_g": summary_row(0.880, (0.86, 0.90))}
    table = comparison.compare({"QFM-IQM": published}, "method.md", 0.02, runs, summaries)
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
    assert "| livec | SRCC | QFM-IQM | 0.891 | 0.805 | 0.030 | [0.785, 0.834] | -0.086 | 0.020 | **miss** |" in markdown


def test_the_paper_base_is_set_beside_our_reference() -> None:
    """DEIQT's published medians (``comparison.base``) beside our ablation reference, QFM-IQM's beside the full model."""
    tables = comparison.published_tables({"published": {"livec": {"srcc": 0.891, "plcc": 0.913}},
                                          "base": {"name": "DEIQT", "published": {"livec": {"srcc": 0.875, "plcc": 0.894}}}})
    assert list(tables) == ["QFM-IQM", "DEIQT"]
    summary = pd.concat([summary_row(0.88, (0.86, 0.90)).assign(model="finetune"),
                         summary_row(0.87, (0.85, 0.89)).assign(model="finetune_baseline")])
    runs = [{"name": "livec", "kind": "livec", "model": m, "paper_model": p, "backbone": "vit", "mode": "fine-tuned"}
            for m, p in (("finetune", "QFM-IQM"), ("finetune_baseline", "DEIQT"))]
    table = comparison.compare(tables, "method.md", 0.02, runs, {"livec": summary}).set_index(["paper_model", "metric"])
    assert table.loc[("DEIQT", "srcc"), "model"] == "finetune_baseline" and table.loc[("DEIQT", "srcc"), "paper"] == 0.875
    assert table.loc[("DEIQT", "srcc"), "delta"] == pytest.approx(0.87 - 0.875)
    assert table.loc[("QFM-IQM", "srcc"), "model"] == "finetune" and len(table) == 4
    assert comparison.published_tables({"published": {}}) == {"QFM-IQM": {}}
