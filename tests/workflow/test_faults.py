"""Fault injection through Snakemake on the tiny config: a user's own labelled folder, edited and messy.

Each bad input stops the run with one exact ``ERROR in <rule>: ...`` line and leaves nothing half-written;
an edited label file reruns what depends on it; a ``kill -9`` is recovered by the commands of docs/operations.md to
the same bytes; predictions stay on the scale of the scores; redrawn figures are byte-identical.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, bomb_png, write_image
from dataset_fixtures import make_fixture
from workflow_helpers import copy_run, scheduled_jobs, snakemake, snakemake_command, tiny_config, write_config

pytestmark = pytest.mark.slow

N_IMAGES = 12
LABELS = "own/labels.csv"  # as the config names it, relative to the working directory
FEATURES = "results/own/features/tf_efficientnet_lite0/c2s64r0/labelled.npz"
SUMMARY = "results/own/summary.md"


def labels_workdir(workdir: Path, rows: list[str] | None = None) -> Path:
    """A working directory with a `labels` dataset ``own`` (12 PNGs and labels.csv) and its config."""
    for i in range(N_IMAGES):
        write_image(workdir / f"own/images/img{i:02d}.png", seed=i)
    (workdir / LABELS).write_text("".join(f"{row}\n" for row in ["name,mos", *(_rows() if rows is None else rows)]))
    config = tiny_config()
    own = {"kind": "labels", "labels": LABELS, "images": "own/images", "image_column": "name", "score_column": "mos",
           "higher_is_better": True, "n_splits": 2, "pool": config["datasets"]["tiny"]["pool"]}
    return write_config(workdir, {**config, "run": ["own"], "datasets": {"own": own}})


def _rows(**replaced: str) -> list[str]:
    """The rows of a valid labels.csv (scores 1..12), with the rows of the named images replaced."""
    return [replaced.get(f"img{i:02d}", f"img{i:02d}.png,{i + 1}") for i in range(N_IMAGES)]


def _image(workdir: Path, name: str) -> Path:
    return (workdir / "own/images" / name).resolve()


# name -> (rows of labels.csv or None for the default, how to spoil the folder, target, the expected line)
FAULTS = {
    "empty label file": (
        [], lambda w: (w / LABELS).write_text(""), "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: {LABELS}: empty file (no header, no rows)"),
    "header only": (
        [], None, "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: {LABELS}: no data rows (only a header)"),
    "image listed twice": (
        [*_rows(), "img03.png,5"], None, "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: {LABELS}, row 14: image name 'img03.png' listed twice (first at row 5)"),
    "two files, one image id": (
        [*_rows(), "img03.jpg,5"], lambda w: write_image(w / "own/images/img03.jpg"), "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: {LABELS}, row 14: 'img03.jpg' and 'img03.png' (row 5) share the image "
                  "id 'img03' (the file name without its extension)"),
    "all scores equal": (
        [f"img{i:02d}.png,42" for i in range(N_IMAGES)], None, "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: {LABELS}: every score in column 'mos' is 42.0; scores must vary"),
    "score not a number": (
        _rows(img02="img02.png,abc"), None, "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: {LABELS}, row 4: score 'abc' in column 'mos' is not a number"),
    "row with an extra field": (
        _rows(img02="img02.png,3,blurry"), None, "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: {LABELS}, line 4: expected 2 fields, saw 3 (a comma inside a field "
                  "needs quotes)"),
    "score that crushes the others": (
        _rows(img02="img02.png,1e300"), None, "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: {LABELS}, row 4: score '1e300' in column 'mos' is so far from the others "
                  "(median 7.5) that scaling to [0, 1] would crush them together; correct it or leave the image out"),
    "listed image missing": (
        None, lambda w: (w / "own/images/img05.png").unlink(), "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: Dataset image not found: {_image(w, 'img05.png')} (listed in {LABELS}; "
                  "1 missing in all)"),
    "label file in no known encoding": (
        [], lambda w: (w / LABELS).write_bytes(b"name,mos\nimg00.png,1\nimg\x8101.png,2\n"), "data/own/meta.csv",
        lambda w: f"ERROR in prepare_dataset: {LABELS}, row 3: byte 0x81 is neither UTF-8 nor cp1252; save the "
                  "table as UTF-8"),
    "too few images to split": (
        _rows()[:4], None, "results/own/splits.csv",
        lambda w: "ERROR in make_splits: data/own/meta.csv (4 images in 4 reference groups, test fraction 0.34): too "
                  "small to split: split 0 has 3 training and 1 test images; each part needs at least 2 (more images, "
                  "or another test fraction)"),
    "corrupt image": (
        None, lambda w: (w / "own/images/img04.png").write_bytes(b"not a png"), FEATURES,
        lambda w: f"ERROR in extract_features: corrupt or unreadable image: {_image(w, 'img04.png')} (cannot identify "
                  f"image file {str(_image(w, 'img04.png'))!r})"),
    "decompression bomb": (
        None, lambda w: bomb_png(w / "own/images/img04.png"), FEATURES,
        lambda w: f"ERROR in extract_features: image too large: {_image(w, 'img04.png')} (200.0 Mpx; the limit is "
                  "89.5 Mpx)"),
}


def _leftovers(workdir: Path) -> list[Path]:
    """Temporary files of atomic writes (``.<name>.<random>``) under data/ and results/."""
    return [p for top in ("data", "results") for p in (workdir / top).rglob(".*") if p.name != ".snakemake_timestamp"]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_bad_input_stops_with_one_line_and_leaves_nothing_half_written(fault: str, tmp_path: Path) -> None:
    rows, spoil, target, line = FAULTS[fault]
    config = labels_workdir(tmp_path, rows)
    if spoil:
        spoil(tmp_path)
    proc = snakemake(tmp_path, config, target, check=False)
    assert proc.returncode != 0
    assert line(tmp_path) in proc.stderr.splitlines(), proc.stderr[-3000:]
    assert not (tmp_path / target).exists()
    assert _leftovers(tmp_path) == []


def test_a_missing_label_file_is_named_before_anything_runs(tmp_path: Path) -> None:
    config = labels_workdir(tmp_path)
    (tmp_path / LABELS).unlink()
    proc = snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Missing input files for rule prepare_dataset:" in out and LABELS in out
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_a_label_file_in_windows_1252_is_read_with_a_warning(tmp_path: Path) -> None:
    config = labels_workdir(tmp_path)
    os.rename(tmp_path / "own/images/img00.png", tmp_path / "own/images/café.png")
    (tmp_path / LABELS).write_bytes((tmp_path / LABELS).read_text().replace("img00", "café").encode("cp1252"))
    snakemake(tmp_path, config, "data/own/meta.csv")
    meta = pd.read_csv(tmp_path / "data/own/meta.csv")
    assert meta["image_id"].iloc[0] == "café" and Path(meta["path"].iloc[0]).name == "café.png"
    assert f"{LABELS}, row 2: byte 0xe9 is not UTF-8; the file is read as cp1252" in \
        (tmp_path / "logs/own/prepare_dataset.log").read_text()


@pytest.mark.parametrize("device, line", [
    ("banana", "config key 'backbone.device': 'banana' does not match '^(cpu|mps|cuda(:[0-9]+)?)$'"),
    ("cuda:7", "config key 'backbone.device': 'cuda:7', but torch sees no CUDA device on this machine (use cpu)"),
])
def test_a_device_torch_cannot_use_stops_the_run_before_any_job(device: str, line: str, tmp_path: Path) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA devices")
    config = tiny_config()
    config["backbone"]["device"] = device
    proc = snakemake(tmp_path, write_config(tmp_path, config), check=False)
    assert proc.returncode != 0 and line in [text.strip() for text in proc.stderr.splitlines()], proc.stderr[-3000:]
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow  # Snakemake builds the DAG
def test_offline_hub_weights_stop_the_run_before_any_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    config = tiny_config()
    config["backbone"].update(name="vit_tiny_patch16_224", weights="hub")
    proc = snakemake(tmp_path / "run", write_config(tmp_path / "run", config), check=False)
    line = ("backbone.weights 'hub': timm's pretrained weights of vit_tiny_patch16_224 are not cached here and cannot "
            "be downloaded (the hub did not answer: OfflineModeIsEnabled); set backbone.weights to a state dict saved "
            "from timm (.pth or .safetensors), or run once with network access so that they are cached")
    assert proc.returncode != 0 and line in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "run/data").exists() and not (tmp_path / "run/results").exists()


def test_a_job_on_a_machine_without_its_device_stops_with_one_line(tmp_path: Path, capfd) -> None:
    """Where the run starts is not always where jobs run (a cluster): each job checks its devices first."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA devices")
    from qfm_iqm.pipeline.runner import run_stage

    log = tmp_path / "extract_features.log"
    with pytest.raises(SystemExit):
        run_stage("extract_features", {}, {"features": str(tmp_path / "f.npz")},
                  {"backbone": {**tiny_config()["backbone"], "device": "cuda:7"}}, str(log))
    line = "backbone.device: 'cuda:7', but torch sees no CUDA device on this machine (use cpu)"
    assert f"ERROR in extract_features: {line}" in capfd.readouterr().err.splitlines()
    assert line in log.read_text() and not (tmp_path / "f.npz").exists()


def test_every_listed_image_is_tracked_and_nothing_else_in_the_folder(tmp_path: Path) -> None:
    """Hidden images and images reached through ``../`` are inputs when the table lists them; a file the table
    does not list is not."""
    rows = [*_rows()[:10], ".hidden.png,11", "../extra/outside.png,12"]
    config = labels_workdir(tmp_path, rows)
    write_image(tmp_path / "own/images/.hidden.png", seed=20)
    write_image(tmp_path / "own/extra/outside.png", seed=21)
    snakemake(tmp_path, config, "data/own/meta.csv")
    assert _dry_run(tmp_path, "data/own/meta.csv") == {}
    time.sleep(1.1)
    (tmp_path / "own/images/Thumbs.db").write_bytes(b"\0" * 64)
    write_image(tmp_path / "own/images/not_yet_labelled.png", seed=22)
    write_image(tmp_path / "own/images/img11.png", seed=23)  # on disk, not listed
    assert _dry_run(tmp_path, "data/own/meta.csv") == {}
    for replaced in ("own/images/.hidden.png", "own/extra/outside.png"):
        write_image(tmp_path / replaced, seed=30)
        assert _dry_run(tmp_path, "data/own/meta.csv") == {"prepare_dataset": 1}, replaced
        snakemake(tmp_path, config, "data/own/meta.csv")


@pytest.fixture(scope="module")
def labels_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny workflow up to the summary on a `labels` folder, run once."""
    workdir = tmp_path_factory.mktemp("labels_run")
    snakemake(workdir, labels_workdir(workdir), SUMMARY)
    return workdir


def _dry_run(workdir: Path, *args: str) -> dict[str, int]:
    return dict(scheduled_jobs(snakemake(workdir, workdir / "config.yaml", *args, "-n")))


def _everything_after_the_labels(tmp_path: Path) -> dict[str, int]:
    """Every job up to the summary less those that do not read the labelled set (weights, pool, pool features)."""
    fresh = tmp_path / "fresh"
    labels_workdir(fresh)
    jobs = _dry_run(fresh, SUMMARY)
    jobs["extract_features"] -= 1  # the pool's
    return {rule: n for rule, n in jobs.items() if rule not in ("convert_weights", "build_expansion_pool")}


@pytest.mark.parametrize("edit", ["score changed", "image replaced in place", "touched only"])
def test_an_edited_labels_folder_reruns_preparation_and_everything_after_it(edit: str, labels_run: Path,
                                                                               tmp_path: Path) -> None:
    run = copy_run(labels_run, tmp_path / "run")
    assert _dry_run(run, SUMMARY) == {}
    time.sleep(1.1)  # a newer mtime than the outputs' on any file system
    labels = run / LABELS
    if edit == "score changed":
        labels.write_text(labels.read_text().replace("img03.png,", "img03.png,1"))
    elif edit == "image replaced in place":
        write_image(run / "own/images/img03.png", seed=99)
    else:
        labels.touch()
    jobs = _dry_run(run, SUMMARY)
    if edit == "touched only":  # Snakemake finds the recorded checksum of the newer file unchanged
        assert jobs == {}
        return
    assert jobs == _everything_after_the_labels(tmp_path)
    assert jobs["prepare_dataset"] == jobs["make_splits"] == jobs["extract_features"] == 1


def test_a_fixed_score_reaches_the_prepared_table(tmp_path: Path) -> None:
    config = labels_workdir(tmp_path, _rows(img02="img02.png,30"))
    snakemake(tmp_path, config, "data/own/meta.csv")
    time.sleep(1.1)
    (tmp_path / LABELS).write_text((tmp_path / LABELS).read_text().replace("img02.png,30", "img02.png,3"))
    snakemake(tmp_path, config, "data/own/meta.csv")
    assert pd.read_csv(tmp_path / "data/own/meta.csv").set_index("image_id").at["img02", "score_raw"] == 3


def test_an_edited_official_label_file_under_root_reruns_the_preparation(tmp_path: Path) -> None:
    root = make_fixture("kadid10k", tmp_path / "official")
    table = pd.read_csv(root / "dmos.csv")
    work = tmp_path / "work"
    config = tiny_config()
    entry = {"kind": "kadid10k", "root": str(root), "n_splits": 2, "expected_count": len(table),
             "pool": config["datasets"]["tiny"]["pool"]}
    config = write_config(work, {**config, "run": ["kadid"], "datasets": {"kadid": entry}})
    snakemake(work, config, "results/kadid/splits.csv")
    assert _dry_run(work, "results/kadid/splits.csv") == {}
    time.sleep(1.1)
    table.loc[0, "dmos"] = 4.5
    table.to_csv(root / "dmos.csv", index=False)
    assert _dry_run(work, "results/kadid/splits.csv") == {"prepare_dataset": 1, "make_splits": 1}


def test_kill_9_during_training_then_the_documented_recovery_gives_the_same_metrics(labels_run: Path,
                                                                                    tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = snakemake_command(run, labels_workdir(run), SUMMARY)
    with open(tmp_path / "killed.log", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        started = time.time()
        while not list(run.glob("logs/own/split*/train_teacher.log")):  # a training job has begun
            assert proc.poll() is None and time.time() - started < 600, (tmp_path / "killed.log").read_text()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its jobs, as a crash or the OOM killer would
        proc.wait()
    assert not (run / "results/own/metrics.csv").exists()
    locked = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert locked.returncode != 0  # Snakemake refuses: files marked incomplete, or the dead run's lock
    assert "--rerun-incomplete flag" in locked.stderr or "removed with the --unlock argument" in locked.stderr
    subprocess.run([*cmd[:-1], "--unlock"], check=True, capture_output=True)  # docs/operations.md's two commands
    subprocess.run([*cmd, "--rerun-incomplete"], check=True, capture_output=True)
    assert (run / "results/own/metrics.csv").read_bytes() == (labels_run / "results/own/metrics.csv").read_bytes()


@pytest.mark.parametrize("artefact, spoil, job", [
    (FEATURES, "flip a byte", "train_teacher"),
    ("results/own/split0/teacher.pt", "truncate", "label_pool"),
])
def test_an_artefact_changed_under_its_old_timestamp_stops_the_job_that_reads_it(labels_run: Path, tmp_path: Path,
                                                                                artefact: str, spoil: str,
                                                                                job: str) -> None:
    """A disk fault or an edit that keeps the timestamp: Snakemake sees nothing, the reading job names the file."""
    run = copy_run(labels_run, tmp_path / "run")
    path = run / artefact
    stat, data = path.stat(), bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data) if spoil == "flip a byte" else bytes(data[: len(data) // 2]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _dry_run(run, SUMMARY) == {}  # Snakemake itself would reuse it
    proc = snakemake(run, run / "config.yaml", SUMMARY, "--forcerun", job, check=False)
    assert proc.returncode != 0
    line = next(line for line in proc.stderr.splitlines() if line.startswith(f"ERROR in {job}: "))
    assert line.startswith(f"ERROR in {job}: {artefact} is corrupt (its SHA-256 is "), line
    assert line.endswith(f"recorded in {path.name}.sha256 when it was made); delete it and rerun")


def test_every_model_predicts_on_the_scale_of_the_scores(tiny_run: Path) -> None:
    """RMSE of every model within 2x the ridge floor's on each split (a head fed z-scores in the millions
    once predicted ~46,000 on [0, 1] scores)."""
    metrics = pd.read_csv(tiny_run / "results/tiny/metrics.csv")
    rmse = metrics.pivot(index="split", columns="model", values="rmse")
    assert set(rmse.columns) >= {"teacher", "baseline", "full", "ridge"}
    for model in rmse.columns:
        assert (rmse[model] <= 2 * rmse["ridge"]).all(), rmse
    predictions = pd.concat([pd.read_csv(p) for p in sorted((tiny_run / "results/tiny").glob("split*/predictions.csv"))])
    assert np.abs(predictions[rmse.columns]).to_numpy().max() < 2


def test_redrawn_figures_are_byte_identical_and_dvc_sees_no_change(tiny_run_copy: Path) -> None:
    dvc = [str(Path(sys.executable).with_name("dvc"))]
    for args in (["init", "--no-scm", "-q"], ["config", "core.analytics", "false"], ["add", "-q", "results"]):
        subprocess.run([*dvc, *args], cwd=tiny_run_copy, check=True, capture_output=True)
    figures = sorted((tiny_run_copy / "results/tiny/figures").iterdir())
    assert {p.suffix for p in figures} == {".png", ".pdf"}
    before = {p: p.read_bytes() for p in figures}
    for _ in range(2):
        snakemake(tiny_run_copy, tiny_run_copy / "config.yaml", "figures", "--forceall",
                  "--profile", str(REPO / "workflow/profiles/figures"))
        assert {p: p.read_bytes() for p in figures} == before
    status = subprocess.run([*dvc, "status", "results.dvc"], cwd=tiny_run_copy, check=True, capture_output=True,
                            text=True)
    assert "up to date" in status.stdout, status.stdout


def test_the_recovery_commands_are_documented() -> None:
    page = (REPO / "docs/operations.md").read_text()
    section = page.split("## When something goes wrong", 1)[1].split("\n## ", 1)[0]
    for words in ("--unlock", "--rerun-incomplete", "logs/", "data/<dataset>", "orphans",
                  'pgrep -af "$PWD/.snakemake/scripts/"'):
        assert words in section, words
    assert yaml.safe_load((REPO / "workflow/profiles/local/config.yaml").read_text())["rerun-incomplete"] is True
