"""Feature extraction: multi-crop, multi-scale pooled backbone features."""

from __future__ import annotations

import copy
import logging
import shutil
import time
import zlib
from collections.abc import Callable
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
from qfm_iqm.settings import schema_default

log = logging.getLogger(__name__)

INPUTS = ("crops", "native")
MIN_SIDE = 32  # a native view's short side at least: the backbone's output stride
EXIF_ORIENTATION = 0x0112
NATIVE_FILTER = Image.Resampling.BICUBIC  # resizes a native view to its capped size


@dataclass(frozen=True)
class CropRecipe:
    """The views of an image the backbone describes, and which of its stages are pooled, how.

    ``input`` "crops": ``n`` crops of ``size``x``size`` at positions drawn from ``seed`` and the image id (images
    whose short side is below ``size`` are first upscaled to it; ``n = 1`` takes the centre). With ``global_view``
    each crop's features are followed by those of the whole image (one forward pass at its native resolution).
    ``input`` "native": the whole image at its own resolution, its longer side capped at ``max_side`` (downscaled,
    aspect kept; a short side under ``MIN_SIDE`` is upscaled to it). ``flip`` adds each view's mirror image.
    ``stages`` (all, or stage indices) and ``pooling`` (means and standard deviations, or means) choose the pooled
    statistics of ``backbone.MultiScaleDescriptor``. A key left None takes the schema's default (``crops.<key>``):
    bundles written before a key existed did what its default does.
    """

    n: int
    size: int
    seed: int = 0
    global_view: bool = False
    input: str | None = None
    max_side: int | None = None
    flip: bool = False
    stages: str | tuple[int, ...] | None = None
    pooling: str | None = None

    def __post_init__(self) -> None:
        for name in ("input", "max_side", "stages", "pooling"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, schema_default(f"crops.{name}"))
        if self.input not in INPUTS:
            raise InputError(f"crops.input: {self.input!r} is not one of {INPUTS}")
        if self.input == "native" and self.global_view:
            raise InputError("crops.global_view: a native-resolution input is the whole image already; "
                             "set global_view false or input crops")
        if not isinstance(self.stages, str):
            object.__setattr__(self, "stages", tuple(self.stages))

    @property
    def native(self) -> bool:
        return self.input == "native"

    @property
    def views(self) -> int:
        """Views (rows) per image: crops or the one native image, each with its mirror under ``flip``."""
        return (1 if self.native else self.n) * (2 if self.flip else 1)

    def native_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) a native view of a ``width`` x ``height`` image has."""
        scale = min(1.0, self.max_side / max(width, height))
        scale = max(scale, MIN_SIDE / max(min(width, height), 1))
        return max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))

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

    def image_views(self, img: Image.Image, image_id: str) -> list[Image.Image]:
        """The ``views`` of one image, each followed by its mirror under ``flip``."""
        if self.native:
            size = self.native_size(*img.size)
            views = [img if size == img.size else img.resize(size, NATIVE_FILTER)]
        else:
            views = self.crops(img, image_id)
        if self.flip:
            views = [v for view in views for v in (view, view.transpose(Image.Transpose.FLIP_LEFT_RIGHT))]
        return views


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
        """The normalised recipe views (views, 3, H, W), and the whole view when the recipe has one
        (1, 3, H, W), else None. Crop positions are drawn from the recipe seed and ``image_id``."""
        crops = self.normalise([np.asarray(c) for c in self.recipe.image_views(img, image_id)])
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
        """(images * views, dim) view rows and, with a global view, each image's (1, dim) whole-image row ->
        (images, views, dim [+ dim])."""
        out = crops.reshape(-1, self.recipe.views, crops.shape[-1])
        if self.recipe.global_view:
            out = np.concatenate([out, np.concatenate(whole)[:, None].repeat(self.recipe.views, 1)], axis=-1)
        return out

    def rows(self, prepared: list[tuple[torch.Tensor, torch.Tensor | None]],
             forward: Callable[[torch.Tensor], np.ndarray], batch_pixels: int) -> np.ndarray:
        """(images, views, dim) rows of prepared images (``Preprocess``): crops through ``forward`` in one batch;
        native views, whose sizes differ between images, grouped by size into batches of at most ``batch_pixels``
        pixels (at least one image) through ``forward``."""
        if not self.recipe.native:
            return self.join(forward(torch.cat([c for c, _ in prepared])), [self.forward(w) for _, w in prepared
                                                                              if w is not None])
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, (views, _) in enumerate(prepared):
            by_size.setdefault(tuple(views.shape), []).append(i)
        out: list[np.ndarray] = [np.empty(0)] * len(prepared)
        for shape, members in by_size.items():
            step = max(1, batch_pixels // (shape[0] * shape[2] * shape[3]))
            for start in range(0, len(members), step):
                chunk = members[start: start + step]
                rows = forward(torch.cat([prepared[i][0] for i in chunk])).reshape(len(chunk), shape[0], -1)
                for i, r in zip(chunk, rows, strict=True):
                    out[i] = r
        return np.stack(out)


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


def native_batch_pixels(device: str, batch_size: int, size: int) -> int:
    """Pixels per forward pass of native views: as many as ``batch_size`` crops of ``size`` px on an accelerator;
    on the CPU one image per pass, which ran twice as fast as batches of that size there
    (``bench/extract_throughput.py --native``; docs/results.md, issue 33)."""
    return 0 if torch.device(device).type == "cpu" else batch_size * size ** 2


def header_size(path: str) -> tuple[int, int]:
    """An image file's upright (width, height) from its header, without decoding it; (0, 0) when unreadable (the
    decoder reports why later)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            return (h, w) if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (w, h)
    except Exception:  # noqa: BLE001 - only an ordering hint
        return 0, 0


def describe_crops(describer: Describer, meta: pd.DataFrame, batch_size: int = 32, compile: bool = False,
                   workers: int | None = None, batch_pixels: int | None = None) -> tuple[np.ndarray, dict]:
    """``describer``'s rows for every image of ``meta`` (image_id, path), (images, views, dim), and throughput
    statistics; ``batch_size`` crops per forward pass (``compile``: through ``torch.compile``), the images
    decoded and cropped by ``workers`` processes (default ``loader.default_workers``) while the backbone runs.
    Native views run eagerly, images of one size together in batches of ``batch_pixels`` pixels (default
    ``native_batch_pixels``; at least one image; for batches the images are read in order of their header sizes;
    the rows come back in ``meta``'s order).
    The statistics include ``data_wait``: the share of the time the backbone waited for images."""
    recipe = describer.recipe
    images_per_batch = max(1, batch_size // recipe.views)
    if batch_pixels is None:
        batch_pixels = native_batch_pixels(describer.device, batch_size, recipe.size)
    if compile and recipe.native:
        log.warning("crops.input native: torch.compile wants static shapes, so the backbone runs eagerly")
    forward = StaticForward(describer, images_per_batch * recipe.views, compile and not recipe.native)
    workers = default_workers(describer.device) if workers is None else workers
    items = list(zip(meta["path"], meta["image_id"].astype(str), strict=True))
    order = np.arange(len(items))
    if recipe.native and batch_pixels:  # batches of one size: read the images grouped by size
        sizes = [header_size(path) for path, _ in items]
        order = np.array(sorted(order, key=lambda i: (recipe.native_size(*sizes[i]) if min(sizes[i]) else (0, 0), i)),
                         dtype=int)
    clock, outputs, forward_s = DataWait(), [], 0.0
    batches = prepared_batches(describer.prepare.file, [items[i] for i in order], images_per_batch, workers,
                               torch.device(describer.device).type == "cuda", clock)
    for prepared in tqdm(batches, total=-(-len(items) // images_per_batch), desc="extract", unit="batch"):
        if errors := [error for _, error in prepared if error]:
            raise InputError(errors[0])
        t0 = time.perf_counter()
        outputs.append(describer.rows([p for p, _ in prepared], forward, batch_pixels))
        forward_s += time.perf_counter() - t0
    features = np.concatenate(outputs)[np.argsort(order)]
    total_s = clock.total_s
    n_crops = len(meta) * recipe.views
    stats = {"images": len(meta), "crops": n_crops, "seconds": total_s, "forward_seconds": forward_s,
             "images_per_s": len(meta) / total_s, "crops_per_s": n_crops / total_s,
             "forward_crops_per_s": n_crops / max(forward_s, 1e-9), "data_wait": clock.fraction,
             "workers": workers, "compiled": forward.compiled is not None, "precision": describer.precision,
             "input": recipe.input}
    log.info("extracted %d images (%d views) in %.1fs: %.1f images/s, %.1f views/s end to end; "
             "bare backbone forward %.1f views/s (%s); data wait %.1f%% (%d decoding workers)", len(meta), n_crops,
             total_s, stats["images_per_s"], stats["crops_per_s"], stats["forward_crops_per_s"],
             "compiled" if stats["compiled"] else "eager", 100 * clock.fraction, workers)
    return features, stats


def pooled_describer(backbone: torch.nn.Module, recipe: CropRecipe, channels_last: bool = True,
                     device: str = "cpu", *, precision: str) -> tuple[Describer, list[str], list[int]]:
    """The describer of pooled features (``MultiScaleDescriptor``) and its block names and sizes."""
    descriptor = MultiScaleDescriptor(backbone, recipe.stages, recipe.pooling)
    names, sizes = descriptor.block_names, descriptor.block_sizes
    if recipe.global_view:
        names, sizes = names + [f"global_{b}" for b in names], sizes + sizes
    return Describer(descriptor, data_config(backbone), recipe, channels_last, device, precision=precision), names, sizes


def extract(meta: pd.DataFrame, backbone: str, weights: str | Path, recipe: CropRecipe,
            batch_size: int = 32, channels_last: bool = True, device: str = "cpu",
            compile: bool = False, workers: int | None = None, batch_pixels: int | None = None, *,
            precision: str) -> tuple[FeatureSet, dict]:
    """Features for every row of ``meta`` (columns image_id, path), and throughput statistics (``describe_crops``)."""
    describer, names, sizes = pooled_describer(create_backbone(backbone, weights), recipe, channels_last, device,
                                               precision=precision)
    features, stats = describe_crops(describer, meta, batch_size, compile, workers, batch_pixels)
    return FeatureSet(meta["image_id"].astype(str).to_numpy(), features, names, sizes), stats
