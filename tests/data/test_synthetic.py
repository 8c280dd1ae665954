"""The demo dataset and the expansion pool: package photos and image folders, distorted and scored by SSIM."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from conftest import write_image

from qfm_iqm.data.meta import META_COLUMNS, read_meta
from qfm_iqm.data.synthetic import build_demo, build_pool


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_demo_dataset_is_deterministic_and_scored_by_ssim(tmp_path: Path) -> None:
    args = {"photos": ["astronaut", "chelsea"], "types": ["gaussian_blur", "jpeg"], "levels": 2, "short_side": 64,
            "seed": 0}
    meta = build_demo(tmp_path / "a/meta.csv", tmp_path / "a/images", **args)
    build_demo(tmp_path / "b/meta.csv", tmp_path / "b/images", **args)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert list(meta.columns) == META_COLUMNS and len(meta) == 2 * (1 + 2 * 2)
    pristine = meta[meta["distortion"] == "pristine"]
    assert np.allclose(pristine["score_raw"], 1.0) and np.allclose(pristine["score"], 1.0)
    assert meta["score"].min() == 0.0
    # stronger distortion, lower SSIM
    blur = meta[(meta["distortion"] == "gaussian_blur")].sort_values(["ref_id", "level"])
    assert (blur.groupby("ref_id")["score_raw"].diff().dropna() < 0).all()
    table = read_meta(tmp_path / "a/meta.csv")
    assert all(Path(p).is_file() for p in table["path"])


def test_pool_mixes_package_photos_and_image_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "photos/p1.jpg", (90, 70), 1)
    write_image(tmp_path / "photos/p2.png", (70, 90), 2)
    meta = build_pool(tmp_path / "pool/meta.csv", tmp_path / "pool/images", ["flower", tmp_path / "photos"],
                      ["gaussian_noise", "contrast"], levels=3, per_image=2, short_side=48, seed=0)
    assert sorted(meta["ref_id"].unique()) == ["flower", "p1", "p2"]
    assert len(meta) == 6 and (meta["level"].between(1, 3)).all()
    assert "score" not in meta.columns
