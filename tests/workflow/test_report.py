"""Result tiers (figures only, evaluation only) and the HTML report in a real headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from workflow_helpers import scheduled_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow
PLOTS = {"plot_scatter", "plot_pairs", "plot_observation", "plot_ablation", "plot_sensitivity", "plot_attention"}
FIGURES = ["pair_distance", "observation_gated", "ablation", "sensitivity", "sensitivity_sweep", "attention",
           "scatter_ridge", "scatter_teacher", "scatter_full"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _changed(workdir: Path, **changes: dict) -> Path:
    config = tiny_config()
    for section, values in changes.items():
        config[section] = {**config[section], **values}
    return write_config(workdir, config, "changed.yaml")


def test_figures_tier_redraws_from_existing_results_and_never_trains(tiny_run_copy: Path) -> None:
    figure = tiny_run_copy / "results/tiny/figures/ablation.png"
    before = figure.stat().st_mtime_ns
    student = {**tiny_config()["student"], "train": {**tiny_config()["student"]["train"], "epochs": 5}}
    changed = _changed(tiny_run_copy, student=student, figures={"dpi": 30})
    assert scheduled_jobs(snakemake(tiny_run_copy, changed, "-n"))["train_student"] == 7  # the full run would train
    proc = snakemake(tiny_run_copy, changed, "figures", "--profile", str(REPO / "workflow/profiles/figures"))
    assert set(scheduled_jobs(proc)) == PLOTS | {"figures"}
    assert figure.stat().st_mtime_ns > before
    assert Image.open(figure).info["dpi"][0] == pytest.approx(30, abs=0.5)


def test_evaluate_tier_reuses_the_trained_weights(tiny_run_copy: Path) -> None:
    evaluation = {"ridge_alphas": [3.0, 30.0]}
    student = {**tiny_config()["student"], "train": {**tiny_config()["student"]["train"], "epochs": 5}}
    changed = _changed(tiny_run_copy, evaluation=evaluation, student=student)
    proc = snakemake(tiny_run_copy, changed, "evaluate", "-n", "--profile", str(REPO / "workflow/profiles/evaluate"))
    jobs = scheduled_jobs(proc)
    assert jobs["evaluate_split"] == 2 and jobs["summarize"] == 1 and jobs["compare_with_paper"] == 1
    assert not {"train_teacher", "train_student", "mine_pairs", "extract_features"} & set(jobs)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_report_loads_in_headless_chromium_with_figures_and_tables(tiny_run: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    snakemake(tiny_run, tiny_run / "config.yaml", "--report", str(report))
    html = report.read_text(errors="replace")
    for name in FIGURES:  # every figure is embedded as a PNG data URI
        assert f"data:image/png;charset=utf8;filename={name}.png;base64," in html, name
    tables = dict(re.findall(r"data:text/csv;charset=utf8;filename=([\w.]+);base64,([A-Za-z0-9+/=]+)", html))
    comparison = base64.b64decode(tables["paper_comparison.csv"]).decode()
    assert comparison.startswith("dataset,metric,paper_model,paper") and "livec,srcc,QFM-IQM,0.891" in comparison
    assert "livec,srcc,DEIQT,0.875" in comparison  # the paper's base, beside our reference
    assert "train_student" in base64.b64decode(tables["benchmarks.csv"]).decode()
    assert "1. accuracy: full beats its base" in base64.b64decode(tables["claims.csv"]).decode()
    config = re.search(r"filename=config\.yaml;base64,([A-Za-z0-9+/=]+)", html)  # the configuration: a page of its own
    assert config and "name: tf_efficientnet_lite0" in base64.b64decode(config.group(1)).decode()

    chrome = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--virtual-time-budget=20000", "--window-size=1280,900"]
    dom = subprocess.run([*chrome, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180,
                         check=True).stdout
    app = dom[dom.index('<div id="app">'):]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", app[: app.find("<script")]))
    for heading in ["Results", "Observation", "Predictions", "Ablation", "Sensitivity", "Attention",
                    "Paper comparison", "Benchmarks", "Configuration", "QFM-IQM reproduction",
                    "tiny: the paper's claims, tested", "Headline numbers"]:
        assert heading in text, heading  # rendered by the report's JavaScript, not just present in its data
    # the front page opens with the claims table and the headline numbers, read from the run's files
    assert text.index("accuracy: full beats its base") < text.index("Headline numbers") < text.index("Everything else")
    assert "SRCC mean [95% CI]" in text and '"tf_efficientnet_lite0"' not in text  # no configuration dump

    shot = tmp_path / "shot.png"
    subprocess.run([*chrome, f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=180, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (900, 1280) and pixels.std() > 10  # a rendered page, not a blank one
