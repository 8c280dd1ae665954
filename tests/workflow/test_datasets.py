"""Datasets through the workflow: the paper's DAG without data, acquisition in manual mode and by trust on
first use from a loopback server, splits, and cross-dataset evaluation."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO
from dataset_fixtures import make_fixture
from file_server import FileServer
from PIL import Image
from scipy.io import loadmat
from workflow_helpers import scheduled_jobs, snakemake, tiny_config, write_config

from qfm_iqm.io import sha256sum

pytestmark = pytest.mark.slow


def test_paper_dry_run_shows_the_whole_dag_without_data(tmp_path: Path) -> None:
    proc = snakemake(tmp_path, REPO / "config/paper.yaml", "-n")
    jobs = scheduled_jobs(proc)
    n_datasets, n_splits, n_students = 8, 10, 5  # full + four one-component variants
    assert jobs["acquire_dataset"] == n_datasets
    assert jobs["prepare_dataset"] + jobs["prepare_resized_dataset"] == n_datasets
    assert jobs["prepare_resized_dataset"] == 2  # KonIQ-10k and SPAQ at 384x512, as DEIQT resizes them
    assert jobs["make_splits"] == n_datasets
    assert jobs["extract_features"] == 2 * n_datasets  # labelled set and expansion pool
    assert jobs["evaluate_split"] == n_datasets * n_splits
    assert jobs["finetune_student"] == n_datasets * n_splits * n_students  # full and the variants, DEIQT's baseline too
    assert jobs["finetune_sensitivity"] == n_datasets * n_splits  # claim 2 on the fine-tuned models, one job a split
    for name in ("finetune", "finetune_baseline"):  # each fine-tuned model's jobs, recipe and GPU memory, up front
        block = re.search(rf"^  {name} +80 jobs, (?:16|32) images with gradients per step, about \d+\.\d GiB of GPU memory "
                          rf"each\n    (.*)\n    (.*)$", proc.stderr, re.MULTILINE)
        assert block, name
        steps, recipe = block.groups()
        assert steps.startswith("9 epochs; steps per epoch (training images x 10 crops / 16): ")
        assert "livec 582 (930)" in steps  # 930 training images x 10 crops / 16
        assert recipe.startswith("lr: warm-up from 2e-07 to 0.0002 (backbone 0.0002) over 3 epochs, then x0.1 every 3 "
                                 "epochs (floor 2e-07)") and "precision amp (float16 with a grad scaler" in recipe
    for name in ("finetune", "finetune_baseline"):
        assert f"results/livec/split9/{name}/model.pt" in proc.stdout
    assert jobs["train_teacher"] == n_datasets * (n_splits + 1)  # and each dataset's final model on every image
    assert jobs["train_student"] == n_datasets * (n_splits * n_students + 1)
    assert jobs["export_model"] == n_datasets
    assert jobs["evaluate_cross"] == 6 * n_splits and jobs["summarize_cross"] == 1
    assert jobs["sensitivity_sweep"] == jobs["plot_attention"] == n_datasets and jobs["compare_with_paper"] == 1
    assert not (tmp_path / "data").exists()
    plan = proc.stderr[proc.stderr.index("Datasets to acquire (acquire.policy: tofu"):]  # disk and time, up front
    rows = {line.split()[0]: line for line in plan.splitlines()[2:11]}
    assert all(rows[name].endswith("  yes") for name in ("koniq10k", "kadid10k", "csiq", "tid2013", "livec"))
    assert all(rows[name].endswith("no, by hand (below)") for name in ("live", "spaq", "livefb"))
    assert re.fullmatch(r"  total +\d+\.\d\d GB\+ +\d+\.\d\d GB\+  about \d+ min of downloading at 10 MB/s", rows["total"])


def _dataset_config(entries: dict[str, dict], **extra) -> dict:
    """The tiny config running these published datasets (each with the tiny demo's pool)."""
    config = tiny_config()
    pool = config["datasets"]["tiny"]["pool"]
    config["datasets"] = {name: {**entry, "pool": pool} for name, entry in entries.items()}
    return {**config, "run": list(entries), **extra}


def _zip_tree(folder: Path, archive: Path) -> Path:
    """``folder`` zipped with itself as the archive's top folder (as the official archives are)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.make_archive(str(archive.with_suffix("")), "zip", folder.parent, folder.name))


def test_manual_mode_names_the_files_then_continues_once_they_are_there(tmp_path: Path) -> None:
    source = make_fixture("live", tmp_path / "official")
    count = int((loadmat(source / "dmos.mat")["orgs"] == 0).sum())
    work = tmp_path / "work"
    config = write_config(work, _dataset_config({"live": {"kind": "live", "n_splits": 2, "expected_count": count}}))
    target = "results/live/splits.csv"
    proc = snakemake(work, config, target, check=False)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    downloads = (work / "data/live/downloads").resolve()
    assert "ERROR in acquire_dataset: live: these official files must be obtained by hand" in message
    assert "databaserelease2.zip  via https://live.ece.utexas.edu/research/quality/subjective.htm" in message
    assert "request the password with the form" in message
    assert f"in {downloads}" in message and "datasets.live.files" in message
    assert "live           0.70 GB   1.20 GB  no, by hand (below)" in message  # the plan, before the work
    assert not (work / "data/live/meta.csv").exists() and not (work / "data/live/raw/acquired.json").exists()

    _zip_tree(source, downloads / "databaserelease2.zip")
    snakemake(work, config, target)
    meta = pd.read_csv(work / "data/live/meta.csv")
    assert len(meta) == count and meta["path"].str.contains("data/live/raw/databaserelease2/").all()
    refs = meta.set_index("image_id")["ref_id"]
    table = pd.read_csv(work / target, dtype={"image_id": str})
    for split, part in table.groupby("split"):
        test = set(refs[part.loc[part["part"] == "test", "image_id"]])
        train = set(refs[part.loc[part["part"] == "train", "image_id"]])
        assert test and train and not test & train, split  # no reference on both sides
    lock = yaml.safe_load((work / "config/datasets.lock.yaml").read_text())  # the hand-placed file is locked
    assert lock["live"]["databaserelease2.zip"]["sha256"] == sha256sum(downloads / "databaserelease2.zip")


def test_one_command_takes_open_datasets_from_nothing_to_splits_and_locks_them(tmp_path: Path,
                                                                               server: FileServer) -> None:
    koniq = make_fixture("koniq10k", tmp_path / "official/koniq")
    kadid = make_fixture("kadid10k", tmp_path / "official/kadid")
    served = tmp_path / "served"
    made = [_zip_tree(koniq / "512x384", served / "koniq10k_512x384.zip"),
            Path(shutil.make_archive(str(served / "koniq10k_scores_and_distributions"), "zip", koniq,
                                     "koniq10k_scores_and_distributions.csv")),
            Path(shutil.copy(koniq / "koniq10k_distributions_sets.csv", served)),
            _zip_tree(kadid, served / "kadid10k.zip")]
    server.files.update({p.name: p.read_bytes() for p in made})

    def files(*names: str) -> list[dict]:  # mirrors on the loopback server, no published checksum
        return [{"name": n, "url": server.url(n), "sha256": None, "extract": n.endswith(".zip")} for n in names]

    labels = pd.read_csv(koniq / "koniq10k_scores_and_distributions.csv")
    entries = {
        "koniq": {"kind": "koniq10k", "n_splits": 1, "split": "official", "expected_count": len(labels),
                  "resize": {"size": [64, 48]},
                  "files": files("koniq10k_512x384.zip", "koniq10k_scores_and_distributions.zip",
                                 "koniq10k_distributions_sets.csv")},
        "kadid": {"kind": "kadid10k", "n_splits": 2, "expected_count": len(pd.read_csv(kadid / "dmos.csv")),
                  "files": files("kadid10k.zip")},
    }
    work = tmp_path / "work"
    config = write_config(work, _dataset_config(entries))
    targets = ("results/koniq/splits.csv", "results/kadid/splits.csv")
    proc = snakemake(work, config, *targets)

    assert sorted(e["name"] for e in server.log) == sorted(p.name for p in made)  # each file once
    lock = yaml.safe_load((work / "config/datasets.lock.yaml").read_text())
    assert {kind: sorted(entry) for kind, entry in lock.items()} == {
        "kadid10k": ["kadid10k.zip"],
        "koniq10k": ["koniq10k_512x384.zip", "koniq10k_distributions_sets.csv", "koniq10k_scores_and_distributions.zip"]}
    for p in made:
        entry = lock["kadid10k" if p.name == "kadid10k.zip" else "koniq10k"][p.name]
        assert entry["sha256"] == sha256sum(p) and entry["size"] == p.stat().st_size and entry["url"] == server.url(p.name)
    record = json.loads((work / "data/kadid/raw/acquired.json").read_text())
    assert record["files"][0]["sha256"] == sha256sum(served / "kadid10k.zip")
    plan = proc.stderr[proc.stderr.index("Datasets to acquire"):]
    assert re.search(r"\n  koniq .*  yes\n  kadid .*  yes\n  total ", plan)
    job_log = (work / "logs/kadid/acquire_dataset.log").read_text()
    assert "download about 3.07 GB" in job_log  # a mirror of an official file keeps its recorded size
    assert re.search(r"kadid10k\.zip: 100%.*B/s\]", job_log)
    assert "trusted on first use" in job_log

    meta = pd.read_csv(work / "data/koniq/meta.csv")
    assert len(meta) == len(labels) and meta["path"].str.startswith("images/").all()
    assert {Image.open(work / "data/koniq" / p).size for p in meta["path"]} == {(64, 48)}
    sets = pd.read_csv(koniq / "koniq10k_distributions_sets.csv")
    split = pd.read_csv(work / "results/koniq/splits.csv", dtype={"image_id": str})
    assert split["split"].eq(0).all() and (split["part"] == "test").sum() == (sets["set"] == "test").sum() > 0
    assert set(pd.read_csv(work / "results/kadid/splits.csv")["split"]) == {0, 1}

    requests = len(server.log)
    again = snakemake(work, config, *targets)
    assert not scheduled_jobs(again) and "Datasets to acquire" not in again.stderr
    strict = write_config(work, {**_dataset_config(entries), "acquire": {"policy": "strict",
                                                                         "lock": "config/datasets.lock.yaml"}}, "strict.yaml")
    rerun = snakemake(work, strict, *targets)  # another policy reruns only the (finished) acquisitions
    assert set(scheduled_jobs(rerun)) == {"acquire_dataset"}
    assert len(server.log) == requests  # neither rerun downloaded anything


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
