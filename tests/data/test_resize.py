"""The resize convention: lossless copies at the configured size, only of the images that need one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_image
from PIL import Image

from qfm_iqm.data.resize import resize_images
from qfm_iqm.io import read_rgb


def test_resize_convention_writes_lossless_copies_only_where_needed(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / "raw/a.jpg", (1024, 768), 0), write_image(tmp_path / "raw/b.jpg", (512, 384), 1),
             write_image(tmp_path / "raw/c.png", (600, 900), 2)]
    meta = pd.DataFrame({"image_id": ["a", "b", "c"], "path": [str(p) for p in paths]})
    out = tmp_path / "data/ds"
    fixed = resize_images(meta, out / "images", out / "meta.csv", threads=2, resample="bicubic",
                         size=[512, 384])
    assert fixed["path"].tolist() == ["images/a.png", str(paths[1]), "images/c.png"]  # b is already 512x384
    assert [read_rgb(out / "images" / f).size for f in ("a.png", "c.png")] == [(512, 384), (512, 384)]
    short = resize_images(meta, out / "short", out / "meta.csv", resample="bicubic", short_side=512)
    assert read_rgb(out / short["path"][0]).size == (683, 512) and read_rgb(out / short["path"][2]).size == (512, 768)
    assert short["path"][1] == "short/b.png"  # 512x384 has a 384 short side: upscaled


def test_deiqt_resizes_koniq_and_spaq_portrait_with_the_bilinear_filter(tmp_path: Path) -> None:
    """DEIQT's torchvision Resize((512, 384)) on a PIL image: 384 wide, 512 high whatever the orientation, Pillow's
    bilinear filter; config/paper.yaml asks for it."""
    path = write_image(tmp_path / "raw/a.png", (1024, 768), 0)
    meta = pd.DataFrame({"image_id": ["a"], "path": [str(path)]})
    out = resize_images(meta, tmp_path / "images", tmp_path / "meta.csv", resample="bilinear", size=[384, 512])
    expected = np.asarray(read_rgb(path).resize((384, 512), Image.Resampling.BILINEAR))
    assert np.array_equal(np.asarray(read_rgb(tmp_path / out["path"][0])), expected)
    with pytest.raises(KeyError, match="unknown resampling filter 'lanczos'"):
        resize_images(meta, tmp_path / "other", tmp_path / "meta.csv", resample="lanczos", size=[384, 512])
