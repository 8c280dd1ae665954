"""data.dvc pins the prepared demo data: rebuilding it in a fresh directory gives the same DVC hash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from workflow_helpers import snakemake

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
