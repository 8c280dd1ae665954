"""Distorted versions of pristine photos: the demo dataset (scored) and expansion pools (unscored)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from skimage.metrics import structural_similarity

from qfm_iqm.data import distortions
from qfm_iqm.data.meta import META_COLUMNS, POOL_COLUMNS, normalise_scores
from qfm_iqm.data.photos import PHOTOS, load_photo, resize_short_side
from qfm_iqm.io import InputError, atomic_path, read_rgb, write_csv

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on the seed and the item, not on processing order."""
    return np.random.default_rng([seed, zlib.crc32(repr(keys).encode())])


def _relpath(image: Path, meta: Path) -> str:
    return os.path.relpath(image, Path(meta).parent)


def ssim_score(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Full-reference SSIM on luminance (BT.601), data range 1."""
    weights = np.array([0.299, 0.587, 0.114])
    return float(structural_similarity(reference @ weights, distorted @ weights, data_range=1.0))


def _variants(types: list[str], levels: int, include_pristine: bool) -> list[tuple[str, int]]:
    pristine = [("pristine", 0)] if include_pristine else []
    return pristine + [(t, lv) for t in types for lv in range(1, levels + 1)]


def _render(
    refs: Iterable[tuple[str, np.ndarray]],
    variants_of: Callable[[str], list[tuple[str, int]]],
    seed: int,
    image_dir: Path,
) -> Iterator[dict]:
    """Write every (reference, distortion, level) PNG into ``image_dir`` and yield its row."""
    for ref_id, ref in refs:
        for dist, level in variants_of(ref_id):
            img = ref if dist == "pristine" else distortions.apply(dist, ref, level, _rng(seed, ref_id, dist, level))
            image_id = f"{ref_id}_{dist}_{level}"
            pixels = distortions.to_uint8(img)
            Image.fromarray(pixels).save(image_dir / f"{image_id}.png")
            yield {"image_id": image_id, "file": f"{image_id}.png", "ref_id": ref_id,
                   "distortion": dist, "level": level, "image": pixels / 255.0, "ref": ref}


def build_demo(out_meta: Path, out_images: Path, photos: list[str], types: list[str],
               levels: int, short_side: int, seed: int) -> pd.DataFrame:
    """The demo dataset: package photos x distortion types x levels, scored by SSIM.

    The score is *not* human opinion: it is full-reference SSIM of the distorted image
    against its pristine source (pristine = 1), min-max normalised over the dataset.
    """
    out_meta, out_images = Path(out_meta), Path(out_images)
    refs = ((name, distortions.to_uint8(load_photo(name, short_side)) / 255.0) for name in photos)
    with atomic_path(out_images, folder=True) as tmp_dir:
        tmp_dir.mkdir()
        rows = []
        for row in _render(refs, lambda _: _variants(types, levels, True), seed, tmp_dir):
            row["path"] = _relpath(out_images / row["file"], out_meta)
            row["score_raw"] = ssim_score(row.pop("ref"), row.pop("image"))
            rows.append(row)
        meta = pd.DataFrame(rows)
        meta["score"] = normalise_scores(meta["score_raw"].to_numpy())
        meta = meta[META_COLUMNS]
        write_csv(meta, out_meta)
    return meta


def build_pool(out_meta: Path, out_images: Path, sources: list[str | Path], types: list[str],
               levels: int, per_image: int, short_side: int, seed: int) -> pd.DataFrame:
    """Unlabelled expansion pool: ``per_image`` random (type, level) versions of each source.

    Sources are package photo names or image files / directories of images.
    """
    out_meta, out_images = Path(out_meta), Path(out_images)

    def refs() -> Iterator[tuple[str, np.ndarray]]:
        for src in sources:
            if str(src) in PHOTOS:
                yield str(src), load_photo(str(src), short_side)
                continue
            path = Path(src)
            if not path.exists():
                raise InputError(f"pool source {src!r} is neither a package photo ({sorted(PHOTOS)}) nor a "
                                 "file or directory")
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
            for f in files:
                yield f.stem, resize_short_side(read_rgb(f), short_side)

    all_variants = _variants(types, levels, False)

    def pick(ref_id: str) -> list[tuple[str, int]]:
        idx = _rng(seed, ref_id).choice(len(all_variants), size=min(per_image, len(all_variants)), replace=False)
        return [all_variants[i] for i in sorted(idx)]

    with atomic_path(out_images, folder=True) as tmp_dir:
        tmp_dir.mkdir()
        rows = [{**row, "path": _relpath(out_images / row["file"], out_meta)}
                for row in _render(refs(), pick, seed, tmp_dir)]
        meta = pd.DataFrame(rows)[POOL_COLUMNS]
        write_csv(meta, out_meta)
    return meta
