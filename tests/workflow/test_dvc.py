"""DVC: data.dvc pins the demo data; a run pushed, cloned and pulled is restored exactly; licences are respected."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from workflow_helpers import scheduled_jobs, snakemake

from qfm_iqm.io import InputError
from qfm_iqm.pipeline import versioning

pytestmark = pytest.mark.slow


def _dvc(workdir: Path, *args: str) -> None:
    subprocess.run([str(Path(sys.executable).with_name("dvc")), *args], cwd=workdir, check=True,
                   capture_output=True, text=True)


def test_demo_build_matches_data_dvc(tmp_path: Path) -> None:
    snakemake(tmp_path, REPO / "config/config.yaml", "data/demo/meta.csv", "data/demo/pool/meta.csv")
    _dvc(tmp_path, "init", "--no-scm", "-q")
    _dvc(tmp_path, "config", "core.analytics", "false")
    _dvc(tmp_path, "add", "-q", "data")
    rebuilt = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]
    pinned = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]
    assert pinned["path"] == "data"
    assert (rebuilt["md5"], rebuilt["nfiles"], rebuilt["size"]) == (pinned["md5"], pinned["nfiles"], pinned["size"])


def _git(workdir: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args], cwd=workdir, check=True,
                   capture_output=True, text=True)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_push_clone_pull_restores_the_run_and_snakemake_has_nothing_to_do(tiny_run_copy: Path, tmp_path: Path) -> None:
    run, store, clone = tiny_run_copy, tmp_path / "store", tmp_path / "clone"
    shutil.rmtree(run / ".snakemake")  # as a fresh clone has it: no Snakemake records
    _git(run, "init", "-q")
    _dvc(run, "init", "-q")
    _dvc(run, "config", "core.analytics", "false")
    _dvc(run, "remote", "add", "-d", "local", str(store))
    tracked = versioning.track(run)
    assert tracked["results"]["files"] > 50 and tracked["data"]["files"] > 10
    _git(run, "add", "config.yaml", "data.dvc", "results.dvc", ".gitignore", ".dvc")
    _git(run, "commit", "-q", "-m", "run")
    versioning.push(run)
    _git(tmp_path, "clone", "-q", str(run), str(clone))
    assert not (clone / "results").exists()
    _dvc(clone, "pull", "-q")
    for name in versioning.TRACKED:
        assert _files(clone / name) == _files(run / name), name  # byte-identical
    # DVC gives restored files fresh, unordered timestamps: Snakemake would redo the run ...
    assert scheduled_jobs(snakemake(clone, clone / "config.yaml", "-n"))["train_student"] == 7
    snakemake(clone, clone / "config.yaml", "--touch")  # ... until the restore's touch step
    assert "Nothing to be done" in "".join(snakemake(clone, clone / "config.yaml", "-n").stdout)


def test_restricted_datasets_never_go_to_a_shared_remote(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    _dvc(tmp_path, "init", "-q")
    _dvc(tmp_path, "remote", "add", "-d", "shared", "s3://lab-bucket/qfm")
    for name, free in [("demo", True), ("kadid10k", False)]:
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "licence.json").write_text(json.dumps(
            {"kind": name, "licence": f"{name} terms", "redistributable": free}))
    assert versioning.restricted(tmp_path) == {"kadid10k": "kadid10k terms"}
    with pytest.raises(InputError, match=r"not pushing to remote 'shared' \(s3://lab-bucket/qfm\).*kadid10k"):
        versioning.push(tmp_path)
    assert versioning.is_local("/srv/dvc-store") and versioning.is_local("file:///srv/x")
    assert not versioning.is_local("ssh://host/x")
