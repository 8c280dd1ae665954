"""Datasets through the workflow: the paper's DAG without data, acquisition in manual mode,
splits of a synthetic set, and cross-dataset evaluation."""

from __future__ import annotations

import json
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from dataset_fixtures import make_fixture
from PIL import Image
from workflow_helpers import scheduled_jobs, snakemake, tiny_config, write_config

from qfm_iqm.io import sha256sum

pytestmark = pytest.mark.slow


def test_paper_dry_run_shows_the_whole_dag_without_data(tmp_path: Path) -> None:
    proc = snakemake(tmp_path, REPO / "config/paper.yaml", "-n")
    jobs = scheduled_jobs(proc)
    n_datasets, n_splits, n_students = 8, 10, 5  # full + four one-component variants
    assert jobs["acquire_dataset"] == n_datasets
    assert jobs["prepare_dataset"] + jobs["prepare_resized_dataset"] == n_datasets
    assert jobs["prepare_resized_dataset"] == 2  # KonIQ-10k at 512x384, SPAQ at a 512 short side
    assert jobs["make_splits"] == n_datasets
    assert jobs["extract_features"] == 2 * n_datasets  # labelled set and expansion pool
    assert jobs["finetune_student"] == jobs["evaluate_split"] == n_datasets * n_splits
    assert jobs["train_teacher"] == n_datasets * (n_splits + 1)  # and each dataset's final model on every image
    assert jobs["train_student"] == n_datasets * (n_splits * n_students + 1)
    assert jobs["export_model"] == n_datasets
    assert jobs["evaluate_cross"] == 6 * n_splits and jobs["summarize_cross"] == 1
    assert jobs["sensitivity_sweep"] == jobs["plot_attention"] == n_datasets and jobs["compare_with_paper"] == 1
    assert not (tmp_path / "data").exists()


def _dataset_config(name: str, entry: dict, **extra) -> dict:
    """The tiny config running one published dataset (its pool as the tiny demo's)."""
    config = tiny_config()
    pool = config["datasets"]["tiny"]["pool"]
    config["datasets"] = {name: {**entry, "pool": pool}}
    return {**config, "run": [name], **extra}


def _zip_tree(folder: Path, archive: Path) -> Path:
    """``folder`` zipped with itself as the archive's top folder (as the official archives are)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.make_archive(str(archive.with_suffix("")), "zip", folder.parent, folder.name))


def test_manual_mode_names_the_files_then_continues_once_they_are_there(tmp_path: Path) -> None:
    source = make_fixture("kadid10k", tmp_path / "official")
    count = len(pd.read_csv(source / "dmos.csv"))
    work = tmp_path / "work"
    config = write_config(work, _dataset_config("kadid", {"kind": "kadid10k", "n_splits": 3, "expected_count": count}))
    target = "results/kadid/splits.csv"
    proc = snakemake(work, config, target, check=False)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    downloads = (work / "data/kadid/downloads").resolve()
    assert "ERROR in acquire_dataset: kadid: these official files must be obtained by hand" in message
    assert "kadid10k.zip  from https://datasets.vqa.mmsp-kn.de/archives/kadid10k.zip" in message
    assert f"in {downloads}" in message and "datasets.kadid.files" in message
    assert not (work / "data/kadid/meta.csv").exists() and not (work / "data/kadid/raw/acquired.json").exists()

    _zip_tree(source, downloads / "kadid10k.zip")
    snakemake(work, config, target)
    meta = pd.read_csv(work / "data/kadid/meta.csv")
    assert len(meta) == count and meta["path"].str.contains("data/kadid/raw/kadid10k/images/").all()
    refs = meta.set_index("image_id")["ref_id"]
    table = pd.read_csv(work / target, dtype={"image_id": str})
    for split, part in table.groupby("split"):
        test = set(refs[part.loc[part["part"] == "test", "image_id"]])
        train = set(refs[part.loc[part["part"] == "train", "image_id"]])
        assert test and train and not test & train, split  # no reference on both sides
    assert table.equals(pd.read_csv(work / target, dtype={"image_id": str}))


@pytest.fixture
def file_server(tmp_path: Path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "served"``; yields (folder, base url)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pinned_files_download_then_resize_and_official_split(tmp_path: Path, file_server) -> None:
    served, url = file_server
    source = make_fixture("koniq10k", tmp_path / "official")
    labels = pd.read_csv(source / "koniq10k_scores_and_distributions.csv")
    sets = pd.read_csv(source / "koniq10k_distributions_sets.csv")
    archives = [_zip_tree(source / "512x384", served / "koniq10k_512x384.zip"),
                shutil.make_archive(str(served / "koniq10k_scores_and_distributions"), "zip", source,
                                    "koniq10k_scores_and_distributions.csv"),
                shutil.copy(source / "koniq10k_distributions_sets.csv", served)]
    files = [{"name": Path(a).name, "url": f"{url}/{Path(a).name}", "sha256": sha256sum(a),
              "extract": Path(a).suffix == ".zip"} for a in archives]
    entry = {"kind": "koniq10k", "n_splits": 1, "split": "official", "expected_count": len(labels),
             "resize": {"size": [64, 48]}, "files": files}
    work = tmp_path / "work"
    snakemake(work, write_config(work, _dataset_config("koniq", entry)), "results/koniq/splits.csv")

    assert sorted(p.name for p in (work / "data/koniq/downloads").iterdir()) == sorted(f["name"] for f in files)
    record = json.loads((work / "data/koniq/raw/acquired.json").read_text())
    assert record["files"][0]["sha256"] == files[0]["sha256"] and not record["redistributable"]
    meta = pd.read_csv(work / "data/koniq/meta.csv")
    assert len(meta) == len(labels) and meta["path"].str.startswith("images/").all()
    assert {Image.open(work / "data/koniq" / p).size for p in meta["path"]} == {(64, 48)}
    split = pd.read_csv(work / "results/koniq/splits.csv", dtype={"image_id": str})
    n_test = (sets["set"] == "test").sum()
    assert split["split"].eq(0).all() and (split["part"] == "test").sum() == n_test > 0


def test_cross_dataset_matrix_reports_each_pair_and_the_diagonal(tiny_run_copy: Path) -> None:
    config = tiny_config()
    other = {**config["datasets"]["tiny"], "photos": ["rocket", "china"], "n_splits": 1}
    config["datasets"]["other"] = other
    config["cross_dataset"] = {"pairs": [["tiny", "other"]], "models": ["ridge", "teacher", "full", "baseline"]}
    proc = snakemake(tiny_run_copy, write_config(tiny_run_copy, config, "cross.yaml"))
    jobs = scheduled_jobs(proc)
    assert jobs["evaluate_cross"] == 2 and jobs["summarize_cross"] == 1
    assert not {"train_teacher", "train_student", "evaluate_split"} & set(jobs)  # the trained models are reused
    table = pd.read_csv(tiny_run_copy / "results/cross_dataset/matrix.csv")
    assert set(zip(table["train"], table["test"])) == {("tiny", "other"), ("tiny", "tiny")}
    assert set(table["model"]) == {"ridge", "teacher", "full", "baseline"} and (table["splits"] == 2).all()
    cross = pd.read_csv(tiny_run_copy / "results/cross_dataset/tiny/other/split1/predictions.csv")
    assert len(cross) == len(pd.read_csv(tiny_run_copy / "data/other/meta.csv"))
    within = pd.read_csv(tiny_run_copy / "results/tiny/summary.csv").set_index("model")
    diagonal = table[table["test"] == "tiny"].set_index("model")
    assert diagonal.loc["full", "srcc_median"] == pytest.approx(within.loc["full", "srcc_median"])
    markdown = (tiny_run_copy / "results/cross_dataset/matrix.md").read_text()
    assert "## full" in markdown and "| tiny | " in markdown
