"""Intermediate artefacts carry a digest from the job that made them, and a changed or truncated one is named,
not parsed into a traceback or reused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.io import InputError
from qfm_iqm.method.checkpoint import load_model, save_model
from qfm_iqm.method.model import QualityModel
from qfm_iqm.pipeline import digests


def features(path: Path) -> Path:
    FeatureSet(np.array(["a", "b"]), np.ones((2, 1, 4), np.float32), ["final_mean"], [4]).save(path)
    return path


def spoil(path: Path, data: bytes) -> None:
    """Overwrite ``path`` with ``data``, its timestamp kept (as a disk fault or ``touch -r`` would)."""
    stat = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_changed_artefact_is_named_by_its_digest_and_others_pass(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a workflow's working directory: artefacts are under results/
    (tmp_path / "results").mkdir()
    (tmp_path / "data").mkdir()
    cache, table, figure = features(Path("results/labelled.npz")), Path("results/pairs.csv"), Path("results/fig.png")
    table.write_text("a,b\n1,2\n")
    figure.write_bytes(b"png")
    Path("data/meta.csv").write_text("image_id\n")
    digests.record([cache, table, figure, Path("results/missing.csv"), Path("data/meta.csv")])
    assert sorted(str(p) for p in Path().rglob("*.sha256")) == ["results/labelled.npz.sha256",
                                                                 "results/pairs.csv.sha256"]
    digests.verify([cache, table, figure])
    data = bytearray(cache.read_bytes())
    data[-30] ^= 0xFF
    spoil(cache, bytes(data))
    with pytest.raises(InputError, match=r"^results/labelled.npz is corrupt \(its SHA-256 is [0-9a-f]{16}\.\.\., "
                                         r"not the [0-9a-f]{16}\.\.\. recorded in labelled.npz.sha256 when it was "
                                         r"made\); delete it and rerun$"):
        digests.verify([table, cache])
    Path("results/labelled.npz.sha256").unlink()  # made before digests: not checked
    digests.verify([cache])


@pytest.mark.parametrize("spoilt", ["truncated", "random bytes"])
def test_a_corrupt_cache_or_checkpoint_is_named_without_numpys_or_torchs_advice(tmp_path: Path, spoilt: str) -> None:
    cache = features(tmp_path / "labelled.npz")
    save_model(QualityModel(in_dim=4, hidden=2, head="mlp", dropout=0.1), tmp_path / "teacher.pt")
    for path in (cache, tmp_path / "teacher.pt"):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if spoilt == "truncated" else np.random.default_rng(0).bytes(len(data)))
    with pytest.raises(InputError, match=rf"^{cache} is corrupt \(\w+ while parsing it\); delete it and rerun the job "
                                         "that makes it$"):
        FeatureSet.load(cache)
    with pytest.raises(InputError, match=rf"^{tmp_path / 'teacher.pt'} is corrupt \(\w+ while parsing it\)"):
        load_model(tmp_path / "teacher.pt")
