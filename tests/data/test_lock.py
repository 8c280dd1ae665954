"""The lock file of dataset digests (``qfm_iqm.data.lock``): concurrent jobs, a malformed file."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import pytest

from qfm_iqm.data.lock import DigestLock
from qfm_iqm.io import InputError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record(path: str, name: str) -> None:
    DigestLock(path).record("toy", name, sha(name.encode()), len(name), None)


def test_concurrent_jobs_each_add_their_entry(tmp_path: Path) -> None:
    path = str(tmp_path / "datasets.lock.yaml")
    names = [f"file{i}.zip" for i in range(8)]
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.starmap(_record, [(path, n) for n in names])
    lock = DigestLock(path)
    assert {n: lock.get("toy", n).sha256 for n in names} == {n: sha(n.encode()) for n in names}
    assert [p.name for p in tmp_path.iterdir()] == ["datasets.lock.yaml"]  # no temporary file left


def test_a_malformed_lock_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "datasets.lock.yaml").write_text("toy: [not, a, mapping]\n")
    with pytest.raises(InputError, match="datasets.lock.yaml"):
        DigestLock(tmp_path / "datasets.lock.yaml").get("toy", "images.zip")
