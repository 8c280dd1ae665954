"""Feature extraction: multi-crop, multi-scale pooled backbone features."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from qfm_iqm.backbone import MultiScaleDescriptor, create_backbone, data_config
from qfm_iqm.feature_cache import FeatureSet
from qfm_iqm.io import read_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropRecipe:
    """``n`` crops of ``size``x``size`` per image at positions drawn from ``seed`` and the image id.

    Images whose short side is below ``size`` are first upscaled to it. ``n = 1`` takes the centre.
    With ``global_view`` each crop's features are followed by those of the whole image (one
    forward pass at its native resolution): a local and a global scale per sample.
    """

    n: int
    size: int
    seed: int = 0
    global_view: bool = False  # also describe the whole image at native resolution, joined to every crop

    def crops(self, img: Image.Image, image_id: str) -> list[Image.Image]:
        if min(img.size) < self.size:
            scale = self.size / min(img.size)
            img = img.resize((max(self.size, round(img.width * scale)), max(self.size, round(img.height * scale))),
                             Image.Resampling.BICUBIC)
        w, h = img.size
        if self.n == 1:
            lefts, tops = [(w - self.size) // 2], [(h - self.size) // 2]
        else:
            rng = np.random.default_rng([self.seed, zlib.crc32(image_id.encode())])
            lefts = rng.integers(0, w - self.size + 1, self.n)
            tops = rng.integers(0, h - self.size + 1, self.n)
        boxes = [(int(x), int(y), int(x) + self.size, int(y) + self.size) for x, y in zip(lefts, tops, strict=True)]
        return [img.crop(box) for box in boxes]


def _batches(meta: pd.DataFrame, recipe: CropRecipe, mean: torch.Tensor, std: torch.Tensor,
             images_per_batch: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(meta), images_per_batch):
        rows = meta.iloc[start: start + images_per_batch]
        crops = [np.asarray(c) for p, i in zip(rows["path"], rows["image_id"], strict=True)
                 for c in recipe.crops(read_rgb(p), str(i))]
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        yield (batch - mean) / std


def describe_crops(module: torch.nn.Module, meta: pd.DataFrame, recipe: CropRecipe, pixels: dict, batch_size: int = 32,
                   channels_last: bool = True, device: str = "cpu",
                   dtype: np.dtype = np.float32) -> tuple[np.ndarray, dict]:
    """``module``'s (crops, dim) output for every recipe crop of ``meta``'s images (image_id, path),
    normalised with timm's ``pixels`` config (mean, std), as (images, crops, dim) ``dtype``; and
    throughput statistics."""
    mean = torch.tensor(pixels["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pixels["std"]).view(1, 3, 1, 1)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    module = module.to(device, memory_format=memory_format).eval()
    images_per_batch = max(1, batch_size // recipe.n)
    outputs, forward_s = [], 0.0
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in tqdm(_batches(meta, recipe, mean, std, images_per_batch),
                          total=-(-len(meta) // images_per_batch), desc="extract", unit="batch"):
            t0 = time.perf_counter()
            out = module(batch.to(device, memory_format=memory_format))
            forward_s += time.perf_counter() - t0
            outputs.append(out.float().cpu().numpy().astype(dtype))
    total_s = time.perf_counter() - started
    n_crops = len(meta) * recipe.n
    stats = {"images": len(meta), "crops": n_crops, "seconds": total_s, "forward_seconds": forward_s,
             "images_per_s": len(meta) / total_s, "crops_per_s": n_crops / total_s,
             "forward_crops_per_s": n_crops / max(forward_s, 1e-9)}
    log.info("extracted %d images (%d crops) in %.1fs: %.1f images/s, %.1f crops/s end to end; "
             "bare backbone forward %.1f crops/s", len(meta), n_crops, total_s, stats["images_per_s"],
             stats["crops_per_s"], stats["forward_crops_per_s"])
    return np.concatenate(outputs).reshape(len(meta), recipe.n, -1), stats


def extract(meta: pd.DataFrame, backbone: str, weights: str | Path, recipe: CropRecipe,
            batch_size: int = 32, channels_last: bool = True, device: str = "cpu") -> tuple[FeatureSet, dict]:
    """Features for every row of ``meta`` (columns image_id, path), and throughput statistics."""
    descriptor = MultiScaleDescriptor(create_backbone(backbone, weights))
    cfg = data_config(descriptor.backbone)
    features, stats = describe_crops(descriptor, meta, recipe, cfg, batch_size, channels_last, device)
    names, sizes = descriptor.block_names, descriptor.block_sizes
    if recipe.global_view:
        mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        whole = []
        with torch.inference_mode():
            for path in tqdm(meta["path"], desc="global view", unit="image"):
                img = torch.from_numpy(np.array(read_rgb(path))).permute(2, 0, 1)[None].float() / 255.0
                whole.append(descriptor(((img - mean) / std).to(device, memory_format=memory_format)).float().cpu().numpy())
        whole = np.concatenate(whole)[:, None].repeat(recipe.n, 1)
        features = np.concatenate([features, whole], axis=-1)
        names, sizes = names + [f"global_{b}" for b in names], sizes + sizes
    return FeatureSet(meta["image_id"].astype(str).to_numpy(), features, names, sizes), stats
