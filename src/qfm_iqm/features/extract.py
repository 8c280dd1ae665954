"""Feature extraction: multi-crop, multi-scale pooled backbone features."""

from __future__ import annotations

import copy
import logging
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from qfm_iqm.features.backbone import MultiScaleDescriptor, create_backbone, data_config
from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.features.loader import DataWait, default_workers, prepared_batches
from qfm_iqm.features.precision import autocast
from qfm_iqm.io import InputError, read_rgb

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


@dataclass(frozen=True)
class Preprocess:
    """An RGB image -> its normalised recipe crops, with timm's pixel ``mean`` and ``std``; small and picklable,
    so that decoding processes can run it."""

    recipe: CropRecipe
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalise(self, arrays: list[np.ndarray]) -> torch.Tensor:
        """(N, 3, H, W) float input of N equally sized (H, W, 3) uint8 arrays."""
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        return (batch - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)

    def __call__(self, img: Image.Image, image_id: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The normalised recipe crops (crops, 3, size, size), and the whole view when the recipe has one
        (1, 3, H, W), else None. Crop positions are drawn from the recipe seed and ``image_id``."""
        crops = self.normalise([np.asarray(c) for c in self.recipe.crops(img, image_id)])
        return crops, self.normalise([np.asarray(img)]) if self.recipe.global_view else None

    def file(self, item: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``self`` of an image file: ``item`` is (path, image id)."""
        return self(read_rgb(item[0]), item[1])


class Describer:
    """Images -> model inputs, the one preprocessing path of the pipeline and the scorer: each image's recipe
    crops (``prepare``, a ``Preprocess`` with timm's ``pixels`` config), through ``module`` (``forward``),
    as (crops, dim) rows of ``dtype``, the dtype the pipeline caches them in; with the recipe's global view the
    whole image's row (one forward pass at its native resolution) is joined to every crop's. ``precision``
    ``bf16`` runs ``module`` under bfloat16 autocast (``qfm_iqm.features.precision``)."""

    def __init__(self, module: torch.nn.Module, pixels: dict, recipe: CropRecipe, channels_last: bool = True,
                 device: str = "cpu", dtype: np.dtype = np.float32, *, precision: str) -> None:
        autocast(device, precision)  # an unknown precision fails here, before any image is read
        self.recipe, self.device, self.dtype, self.precision = recipe, device, dtype, precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.module = module.to(device, memory_format=self.memory_format).eval()
        self.prepare = Preprocess(recipe, tuple(pixels["mean"]), tuple(pixels["std"]))

    def compiled(self) -> Describer:
        """This describer with its module through ``torch.compile`` (static shapes: feed it equal batches)."""
        twin = copy.copy(self)
        twin.module = torch.compile(self.module, dynamic=False)
        return twin

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """``module``'s output for a normalised batch, as ``dtype``."""
        with autocast(self.device, self.precision):
            out = self.module(batch.to(self.device, memory_format=self.memory_format))
        return out.float().cpu().numpy().astype(self.dtype)

    def join(self, crops: np.ndarray, whole: list[np.ndarray]) -> np.ndarray:
        """(images * crops, dim) crop rows and, with a global view, each image's (1, dim) whole-image row ->
        (images, crops, dim [+ dim])."""
        out = crops.reshape(-1, self.recipe.n, crops.shape[-1])
        if self.recipe.global_view:
            out = np.concatenate([out, np.concatenate(whole)[:, None].repeat(self.recipe.n, 1)], axis=-1)
        return out


class StaticForward:
    """``describer.forward`` through ``torch.compile`` at one static batch of ``crops`` (a smaller last batch is
    padded), or eagerly: when not ``enabled``, without a C++ compiler on the CPU, or once compiling fails."""

    def __init__(self, describer: Describer, crops: int, enabled: bool) -> None:
        self.eager, self.crops = describer, crops
        self.compiled, self.failed = None, False  # failed: compiling was wanted and is impossible here
        if enabled and torch.device(describer.device).type == "cpu" and not compiler_available():
            log.warning("no C++ compiler for torch.compile: running the backbone eagerly")
            self.failed = True
        elif enabled:
            self.compiled = describer.compiled()

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        if self.compiled is None:
            return self.eager.forward(batch)
        n = len(batch)
        if n < self.crops:
            batch = torch.cat([batch, batch.new_zeros(self.crops - n, *batch.shape[1:])])
        try:
            return self.compiled.forward(batch)[:n]
        except Exception as err:  # noqa: BLE001 - any compiler failure: the eager module gives the same result
            log.warning("torch.compile failed (%s): running the backbone eagerly", " ".join(str(err).split())[:200])
            self.compiled, self.failed = None, True
            return self.eager.forward(batch[:n])


def compiler_available() -> bool:
    """Whether ``torch.compile`` can build CPU kernels here (it needs a C++ compiler)."""
    return any(shutil.which(cc) for cc in ("c++", "g++", "clang++"))


def describe_crops(describer: Describer, meta: pd.DataFrame, batch_size: int = 32, compile: bool = False,
                   workers: int | None = None) -> tuple[np.ndarray, dict]:
    """``describer``'s rows for every image of ``meta`` (image_id, path), (images, crops, dim), and throughput
    statistics; ``batch_size`` crops per forward pass (``compile``: through ``torch.compile``), the images
    decoded and cropped by ``workers`` processes (default ``loader.default_workers``) while the backbone runs.
    The statistics include ``data_wait``: the share of the time the backbone waited for images."""
    images_per_batch = max(1, batch_size // describer.recipe.n)
    forward = StaticForward(describer, images_per_batch * describer.recipe.n, compile)
    workers = default_workers(describer.device) if workers is None else workers
    items = list(zip(meta["path"], meta["image_id"].astype(str), strict=True))
    clock, outputs, forward_s = DataWait(), [], 0.0
    batches = prepared_batches(describer.prepare.file, items, images_per_batch, workers,
                               torch.device(describer.device).type == "cuda", clock)
    for prepared in tqdm(batches, total=-(-len(items) // images_per_batch), desc="extract", unit="batch"):
        if errors := [error for _, error in prepared if error]:
            raise InputError(errors[0])
        t0 = time.perf_counter()
        crops = forward(torch.cat([c for (c, _), _ in prepared]))
        whole = [describer.forward(w) for (_, w), _ in prepared if w is not None]
        forward_s += time.perf_counter() - t0
        outputs.append(describer.join(crops, whole))
    total_s = clock.total_s
    n_crops = len(meta) * describer.recipe.n
    stats = {"images": len(meta), "crops": n_crops, "seconds": total_s, "forward_seconds": forward_s,
             "images_per_s": len(meta) / total_s, "crops_per_s": n_crops / total_s,
             "forward_crops_per_s": n_crops / max(forward_s, 1e-9), "data_wait": clock.fraction,
             "workers": workers, "compiled": forward.compiled is not None, "precision": describer.precision}
    log.info("extracted %d images (%d crops) in %.1fs: %.1f images/s, %.1f crops/s end to end; "
             "bare backbone forward %.1f crops/s (%s); data wait %.1f%% (%d decoding workers)", len(meta), n_crops,
             total_s, stats["images_per_s"], stats["crops_per_s"], stats["forward_crops_per_s"],
             "compiled" if stats["compiled"] else "eager", 100 * clock.fraction, workers)
    return np.concatenate(outputs), stats


def pooled_describer(backbone: torch.nn.Module, recipe: CropRecipe, channels_last: bool = True,
                     device: str = "cpu", *, precision: str) -> tuple[Describer, list[str], list[int]]:
    """The describer of pooled features (``MultiScaleDescriptor``) and its block names and sizes."""
    descriptor = MultiScaleDescriptor(backbone)
    names, sizes = descriptor.block_names, descriptor.block_sizes
    if recipe.global_view:
        names, sizes = names + [f"global_{b}" for b in names], sizes + sizes
    return Describer(descriptor, data_config(backbone), recipe, channels_last, device, precision=precision), names, sizes


def extract(meta: pd.DataFrame, backbone: str, weights: str | Path, recipe: CropRecipe,
            batch_size: int = 32, channels_last: bool = True, device: str = "cpu",
            compile: bool = False, workers: int | None = None, *, precision: str) -> tuple[FeatureSet, dict]:
    """Features for every row of ``meta`` (columns image_id, path), and throughput statistics (``describe_crops``)."""
    describer, names, sizes = pooled_describer(create_backbone(backbone, weights), recipe, channels_last, device,
                                               precision=precision)
    features, stats = describe_crops(describer, meta, batch_size, compile, workers)
    return FeatureSet(meta["image_id"].astype(str).to_numpy(), features, names, sizes), stats
