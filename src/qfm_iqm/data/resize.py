"""Resolution conventions (e.g. KonIQ-10k at 512x384, SPAQ with a 512-pixel short side), with Pillow's bicubic or
bilinear filter (bilinear is what torchvision's ``Resize`` applies to a PIL image, as DEIQT resizes KonIQ-10k and
SPAQ)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from qfm_iqm.io import atomic_path, read_rgb


def target_size(width: int, height: int, size: list[int] | None = None,
                short_side: int | None = None) -> tuple[int, int]:
    """The (width, height) an image of ``width`` x ``height`` is brought to: ``size`` exactly, or
    ``short_side`` on the shorter side with the aspect ratio kept."""
    if size is not None:
        return int(size[0]), int(size[1])
    scale = short_side / min(width, height)
    return round(width * scale), round(height * scale)


RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def resize_images(meta: pd.DataFrame, out_images: str | Path, out_meta: str | Path, threads: int = 1,
                  *, resample: str, **convention: list[int] | int) -> pd.DataFrame:
    """Meta table whose images follow the resolution ``convention``: images already at their target size
    keep their path; the others are resized (``resample``: a key of ``RESAMPLING``) into ``out_images`` as lossless
    PNGs, so that no compression is added to a quality dataset. ``out_images`` appears only complete."""
    if resample not in RESAMPLING:
        raise KeyError(f"unknown resampling filter {resample!r}; known: {sorted(RESAMPLING)}")
    out_images = Path(out_images)

    def convert(row: tuple[str, str], tmp_dir: Path) -> str:
        image_id, path = row
        img = read_rgb(path)
        size = target_size(*img.size, **convention)
        if img.size == size:
            return path
        name = image_id.replace("/", "__") + ".png"
        img.resize(size, RESAMPLING[resample]).save(tmp_dir / name)
        return os.path.relpath(out_images / name, Path(out_meta).parent)

    with atomic_path(out_images, folder=True) as tmp_dir:
        tmp_dir.mkdir()
        rows = list(zip(meta["image_id"], meta["path"], strict=True))
        with ThreadPoolExecutor(max(1, threads)) as pool:
            paths = list(tqdm(pool.map(lambda row: convert(row, tmp_dir), rows), total=len(rows), desc="resize"))
    return meta.assign(path=paths)
