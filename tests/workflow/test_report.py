"""Result tiers (figures only, evaluation only) and the HTML report in a real headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
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
# Chromium as the machine runs it: no sandbox (root in CI), and no background connections (the network is closed)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORTS = [(1280, 800), (1920, 1080)]


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
    assert "1. accuracy: full beats its base" in base64.b64decode(tables["claims_readable.csv"]).decode()
    config = re.search(r"filename=config\.yaml;base64,([A-Za-z0-9+/=]+)", html)  # the configuration: a page of its own
    assert config and "name: tf_efficientnet_lite0" in base64.b64decode(config.group(1)).decode()

    for width, height in VIEWPORTS:
        front = _front_page(report, width, height, tmp_path / f"front_{width}x{height}.png")
        # rendered by the report's JavaScript, not just present in its data
        for heading in ["Results", "Observation", "Predictions", "Ablation", "Sensitivity", "Attention",
                        "Paper comparison", "Benchmarks", "Configuration", "QFM-IQM reproduction",
                        "tiny: the paper's claims, tested", "Headline numbers"]:
            assert heading in front["text"], heading
        text = front["text"]  # the front page opens with the claims table and the headline numbers, from the run's files
        assert text.index("accuracy: full beats its base") < text.index("Headline numbers") < text.index("Everything else")
        assert "SRCC mean [95% CI]" in text and '"tf_efficientnet_lite0"' not in text  # no configuration dump
        assert re.search(r"[+-]0\.\d{2,4} \[[+-]0\.\d{2,4}, [+-]0\.\d{2,4}\]", text)  # rounded: +0.012 [-0.002, +0.027]
        assert not re.search(r"\d\.\d{6}", text), "unrounded numbers on the front page"
        assert front["scroll"] == 0
        boxes = {name: front[name] for name in ("title", "claims", "headline")}
        for name, (left, top, right, bottom) in boxes.items():  # seen at once, without scrolling
            assert 0 <= left and 0 <= top and right <= width and bottom <= height, (width, height, name, boxes)
        assert all(not _overlap(box, front["graph"]) for box in boxes.values()), (front["graph"], boxes)
        assert front["graph"][1] >= boxes["headline"][3]  # the rule graph follows the tables
        pixels = np.asarray(Image.open(tmp_path / f"front_{width}x{height}.png").convert("L"), dtype=float)
        assert pixels.shape == (height, width) and pixels.std() > 10  # a rendered page, not a blank one


def _overlap(a: list[float], b: list[float]) -> bool:
    """Whether two (left, top, right, bottom) boxes intersect."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _front_page(report: Path, width: int, height: int, screenshot: Path) -> dict:
    """The report's front page in headless Chromium at ``width`` x ``height``: its text, scroll position and the
    boxes (left, top, right, bottom) of the title, the first claims table, the headline table and the rule graph."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(report.as_uri())
            page.wait_for_selector(".document table.docutils")
            page.wait_for_selector("#rulegraph canvas")
            page.screenshot(path=str(screenshot))
            return page.evaluate("""() => {
                const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
                const tables = document.querySelectorAll('.document table.docutils');
                return {text: document.getElementById('app').textContent.replace(/\\s+/g, ' '), scroll: document.scrollingElement.scrollTop,
                        title: box(document.querySelector('.document h1.title')), claims: box(tables[0]),
                        headline: box(tables[1]), graph: box(document.getElementById('rulegraph'))};
            }""")
        finally:
            browser.close()
