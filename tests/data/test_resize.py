"""The resize convention: lossless copies at the configured size, only of the images that need one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import write_image

from qfm_iqm.data.resize import resize_images
from qfm_iqm.io import read_rgb


def test_resize_convention_writes_lossless_copies_only_where_needed(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / "raw/a.jpg", (1024, 768), 0), write_image(tmp_path / "raw/b.jpg", (512, 384), 1),
             write_image(tmp_path / "raw/c.png", (600, 900), 2)]
    meta = pd.DataFrame({"image_id": ["a", "b", "c"], "path": [str(p) for p in paths]})
    out = tmp_path / "data/ds"
    fixed = resize_images(meta, out / "images", out / "meta.csv", threads=2, size=[512, 384])
    assert fixed["path"].tolist() == ["images/a.png", str(paths[1]), "images/c.png"]  # b is already 512x384
    assert [read_rgb(out / "images" / f).size for f in ("a.png", "c.png")] == [(512, 384), (512, 384)]
    short = resize_images(meta, out / "short", out / "meta.csv", short_side=512)
    assert read_rgb(out / short["path"][0]).size == (683, 512) and read_rgb(out / short["path"][2]).size == (512, 768)
    assert short["path"][1] == "short/b.png"  # 512x384 has a 384 short side: upscaled
