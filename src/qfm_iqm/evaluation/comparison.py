"""The paper-versus-ours table: one row per published cell (paper model, dataset, metric), with a verdict. The paper
models are QFM-IQM (``comparison.published``), set beside our full model, and its base, DEIQT
(``comparison.base``), set beside our ablation reference.

Verdicts: ``match`` (|ours - paper| <= tolerance, declared in the config before the run), ``within CI``
(the paper's value lies inside our 95% t CI of the mean over splits, with the Nadeau-Bengio corrected variance;
a bootstrap CI of a median from so few splits is too unreliable to rest on), ``miss``, ``not run`` (no run of
that dataset here), ``no paper value`` (the paper's cell is unknown; it stays unknown).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("srcc", "plcc")
PAPER_MODEL = "QFM-IQM"  # the paper's own model, whose medians are ``comparison.published``
COLUMNS = ["dataset", "metric", "paper_model", "paper", "source", "run", "model", "backbone", "mode", "splits",
           "ours_median", "ours_iqr", "ci_low", "ci_high", "delta", "tolerance", "verdict"]


def published_tables(comparison: dict) -> dict[str, dict]:
    """The config's ``comparison`` section as paper model -> dataset kind -> published cells: QFM-IQM's, then its
    base's (``comparison.base``), when given."""
    base = comparison.get("base")
    return {PAPER_MODEL: comparison["published"], **({base["name"]: base["published"]} if base else {})}


def verdict(paper: float | None, median: float, ci: tuple[float, float], tolerance: float) -> str:
    if paper is None:
        return "no paper value"
    if abs(median - paper) <= tolerance:
        return "match"
    return "within CI" if ci[0] <= paper <= ci[1] else "miss"


def compare(published: dict[str, dict[str, dict[str, float | None]]], source: str, tolerance: float,
            runs: list[dict], summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows for every published (paper model, dataset kind, metric) of ``published`` (``published_tables``); ``runs``
    describe our rows (name, kind, model, the paper model it is set beside, backbone, mode) and ``summaries`` map a
    run's name to its summary table (``evaluate.summarise``)."""
    rows = []
    for paper_model, kind, cells in ((m, k, c) for m, table in published.items() for k, c in table.items()):
        ours = [r for r in runs if r["kind"] == kind and r["paper_model"] == paper_model]
        for metric in METRICS:
            paper = cells.get(metric)
            base = {"dataset": kind, "metric": metric, "paper_model": paper_model, "paper": paper,
                    "source": source if paper is not None else "", "tolerance": tolerance}
            if not ours:
                rows.append({**base, "verdict": "not run" if paper is not None else "no paper value"})
            for run in ours:
                row = summaries[run["name"]].set_index("model").loc[run["model"]]
                median, ci = row[f"{metric}_median"], (row[f"{metric}_mean_ci_low"], row[f"{metric}_mean_ci_high"])
                rows.append({**base, "run": run["name"], "model": run["model"], "backbone": run["backbone"],
                             "mode": run["mode"], "splits": int(row["splits"]), "ours_median": median,
                             "ours_iqr": row[f"{metric}_iqr"], "ci_low": ci[0], "ci_high": ci[1],
                             "delta": np.nan if paper is None else median - paper,
                             "verdict": verdict(paper, median, ci, tolerance)})
    return pd.DataFrame(rows).reindex(columns=COLUMNS).astype({"splits": "Int64"})


def to_markdown(table: pd.DataFrame) -> str:
    """The comparison as a Markdown table (blank where a value does not exist)."""
    def fmt(value: object) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    legend = (f"One row per published cell: {PAPER_MODEL} beside our full model, its base beside our ablation "
              "reference. `match`: |ours - paper| <= tolerance; `within CI`: the paper's value lies "
              "in our 95% t CI of the mean over splits (Nadeau-Bengio corrected); `miss`: neither; `not run`: no run of that dataset here; "
              "`no paper value`: the paper's cell is unknown and stays unknown.")
    header = ("| dataset | metric | paper model | paper | ours (median) | IQR | 95% CI | delta | tolerance | verdict | "
              "run | model | backbone | mode | splits | source |")
    lines = ["# QFM-IQM: paper versus this reproduction", "", legend, "", header, "|" + "---|" * 16]
    for _, r in table.iterrows():
        ci = "" if pd.isna(r["ci_low"]) else f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        delta = "" if pd.isna(r["delta"]) else f"{r['delta']:+.3f}"
        splits = "" if pd.isna(r["splits"]) else str(int(r["splits"]))
        cells = [r["dataset"], r["metric"].upper(), r["paper_model"], fmt(r["paper"]), fmt(r["ours_median"]),
                 fmt(r["ours_iqr"]), ci, delta, fmt(r["tolerance"]), f"**{r['verdict']}**", fmt(r["run"]), fmt(r["model"]),
                 fmt(r["backbone"]), fmt(r["mode"]), splits, fmt(r["source"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
