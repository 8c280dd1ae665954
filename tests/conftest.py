"""Shared fixtures: paths, tiny images, and the real data beside the project when present."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from file_server import FileServer
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
LIVEC_ROOT = SHARED / "datasets/livec/ChallengeDB_release"
BSDS = SHARED / "datasets/bsds500/train"

needs_livec = pytest.mark.skipif(not LIVEC_ROOT.is_dir(), reason=f"LIVEC release not present at {LIVEC_ROOT}")


def write_image(path: Path, size: tuple[int, int] = (80, 64), seed: int = 0) -> Path:
    """A random RGB PNG/JPEG at ``path`` (format from the suffix)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def labelled_folder(tmp_path: Path) -> Path:
    """A `labels`-kind dataset: images/ and labels.csv with six rows."""
    rows = ["name,mos"]
    for i in range(6):
        write_image(tmp_path / "images" / f"img{i}.png", seed=i)
        rows.append(f"img{i}.png,{10 * i + 5}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole workflow run once on the tiny config (tests/tiny_config.yaml); tests only read it or dry-run."""
    from workflow_helpers import snakemake, tiny_config, write_config

    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir, write_config(workdir, tiny_config()))
    return workdir


@pytest.fixture
def tiny_run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny workflow run (timestamps and Snakemake's records kept), for tests that change it."""
    from workflow_helpers import copy_run

    return copy_run(tiny_run, tmp_path / "run")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = FileServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
