"""Scoring images with a bundle: the Python API (``qfm_iqm.load_model``) behind ``qfm-iqm score``.

Pixels go through the pipeline's own code: the one image reader (``qfm_iqm.io``), the crop recipe and the
describer of the features the model was trained on (``qfm_iqm.features.extract``, ``qfm_iqm.method.partial``), and
``qfm_iqm.method.train.predict``. Files are decoded and cropped in worker processes (``qfm_iqm.features.loader``, as in
extraction), a bounded number ahead of the backbone, so memory stays bounded however many images stream through.
"""

from __future__ import annotations

import logging
import os
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from qfm_iqm.deploy.bundle import Bundle
from qfm_iqm.features.devices import check_device
from qfm_iqm.features.extract import CropRecipe, Preprocess, StaticForward, native_batch_pixels, pooled_describer
from qfm_iqm.features.loader import default_workers, prepared_batches
from qfm_iqm.io import InputError, read_rgb, upright_rgb
from qfm_iqm.method.train import predict

log = logging.getLogger(__name__)

ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
SCALES = ("mos", "unit", "raw")
COMPILE_MODES = ("auto", "on", "off")
COMPILE_MIN_CROPS = 5000  # "auto" compiles from here on: about where it pays with an empty compiler cache
GLOBAL_MAX_PIXELS = 16_000_000  # a global view runs the whole image through the backbone: refuse larger ones


def from_array(array: np.ndarray) -> Image.Image:
    """One (H, W), (H, W, C) image array (C = 1, 3, 4; alpha dropped) of uint8, or of floats in [0, 1], as RGB."""
    shape = tuple(array.shape)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        array = array[..., 0] if array.shape[-1] == 1 else array[..., :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise InputError(f"an image array is (H, W) or (H, W, 1|3|4), not {shape}")
    if array.size == 0:
        raise InputError(f"an image array of shape {shape} has no pixels")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise InputError("a float image array must hold values in [0, 1]")
        array = np.rint(array * 255)
    elif array.dtype != np.uint8:
        raise InputError(f"an image array is uint8, or float in [0, 1], not {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array.astype(np.uint8))).convert("RGB")


def as_rgb(image: ImageLike) -> Image.Image:
    """Any accepted single image as upright 8-bit RGB: a path (the pipeline's reader), a PIL image, a (H, W[, C])
    array or a (C, H, W) tensor."""
    if isinstance(image, (str, os.PathLike)):
        return read_rgb(image)
    if isinstance(image, Image.Image):
        try:
            return upright_rgb(image)
        except (OSError, ValueError) as err:
            raise InputError(f"unreadable PIL image ({err})") from err
    if isinstance(image, torch.Tensor):
        shape = tuple(image.shape)
        if image.ndim != 3 or shape[0] not in (1, 3, 4):
            hwc = image.ndim == 3 and shape[-1] in (1, 3, 4)
            raise InputError(f"an image tensor is (C, H, W) with C = 1, 3 or 4, not {shape}"
                             + ("; for an (H, W, C) tensor give tensor.permute(2, 0, 1)" if hwc else ""))
        if not image.numel():
            raise InputError(f"an image tensor of shape {shape} has no pixels")
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        return from_array(image)
    raise InputError(f"cannot score a {type(image).__name__}: give a path, a PIL image, an array or a tensor")


def as_list(images: ImageLike | Sequence[ImageLike]) -> tuple[list[ImageLike], bool]:
    """The images of one input or a batch (a list or tuple, an (N, H, W, C) array, an (N, C, H, W) tensor), and
    whether it was a single image."""
    if isinstance(images, (list, tuple)):
        return list(images), False
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images), False
    return [images], True


def content_id(img: Image.Image) -> str:
    """An id drawn from the pixels, which seeds the crop positions: a copy of an image scores the same."""
    return f"px{zlib.crc32(img.tobytes()):08x}{img.width}x{img.height}"


@dataclass(frozen=True)
class Result:
    """One image's outcome, or its ``error``: ``raw``, the model's output on the normalised training scale (what
    the pipeline's predictions hold); ``unit``, that clipped to [0, 1] (1 = best); ``mos``, ``unit`` on the
    training dataset's MOS scale."""

    key: object
    raw: float = float("nan")
    unit: float = float("nan")
    mos: float = float("nan")
    error: str = ""


Prepared = tuple[object, tuple[torch.Tensor, torch.Tensor | None] | None, str]


@dataclass(frozen=True)
class Prepare:
    """(image or path, id or None) -> the image's prepared crops (``Preprocess``), seeded by the id or else by the
    pixels (``content_id``); any failure is an InputError that names it. Small and picklable, so that decoding
    processes can run it; ``max_pixels`` bounds a whole-image view (None: the recipe has none)."""

    preprocess: Preprocess
    max_pixels: int | None

    def __call__(self, item: tuple[ImageLike, str | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
        image, image_id = item
        try:
            img = as_rgb(image)
            if self.max_pixels is not None and img.width * img.height > self.max_pixels:
                raise InputError(f"{img.width}x{img.height} is too large for this model's whole-image view "
                                 f"(at most {self.max_pixels / 1e6:.0f} Mpx)")
            return self.preprocess(img, image_id or content_id(img))
        except InputError:
            raise
        except Exception as err:  # one bad image must not stop the others: its message says why
            raise InputError(f"{type(err).__name__}: {err}") from err


class Scorer:
    """Scores images with a bundle's model: ``scorer(images)`` for in-memory use, ``scorer.stream`` for files."""

    def __init__(self, bundle: Bundle, device: str = "cpu", batch_size: int = 40, compile: str = "auto") -> None:
        if compile not in COMPILE_MODES:
            raise InputError(f"compile: {compile!r} is not one of {COMPILE_MODES}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: {batch_size!r}: must be a whole number of at least 1")
        check_device(device, "device")
        self.bundle, self.device, self.compile = bundle, device, compile
        recipe = CropRecipe(**bundle.info["crops"])
        backbone = bundle.backbone()
        precision = bundle.info["backbone"].get("precision", "fp32")  # the run's extraction; older bundles: fp32
        self.model = bundle.quality_model().to(device)
        from qfm_iqm.method.partial import activation_describer, partial_spec

        if (partial := partial_spec(self.model.spec)) is not None:
            self.describer, _ = activation_describer(backbone, partial.from_block, recipe, device=device,
                                                     precision=precision)
        else:
            self.describer = pooled_describer(backbone, recipe, device=device, precision=precision)[0]
        self.images_per_batch = max(1, batch_size // recipe.views)
        self.batch_pixels = native_batch_pixels(device, batch_size, recipe.size)
        self._forward = StaticForward(self.describer, self.images_per_batch * recipe.views, False)
        scale = bundle.info["scale"]
        self.low, self.high, self.higher_is_better = scale["min"], scale["max"], scale["higher_is_better"]

    def __call__(self, images: ImageLike | Sequence[ImageLike], ids: Sequence[str] | None = None,
                 scale: str = "mos") -> float | np.ndarray:
        """Scores of one image (a float) or a batch (an array), on the training dataset's MOS scale (``scale``
        "mos"), on [0, 1] (``"unit"``, 1 = best) or unclipped on the normalised training scale (``"raw"``).
        ``ids`` seed the crop positions as the pipeline's image ids do (default: drawn from the pixels): a list,
        one per image, or a string for one image. A bad image raises InputError."""
        if scale not in SCALES:
            raise InputError(f"scale: {scale!r} is not one of {SCALES}")
        items, single = as_list(images)
        if isinstance(ids, str):
            if not single:
                raise InputError(f"ids: one id per image, as a list, not the string {ids!r}")
            ids = [ids]
        if ids is not None and len(ids) != len(items):
            raise InputError(f"{len(ids)} ids for {len(items)} images")
        out = []
        for result in self.score([(i, x, None if ids is None else str(ids[i])) for i, x in enumerate(items)]):
            if result.error:
                raise InputError(result.error)
            out.append(getattr(result, scale))
        return out[0] if single else np.array(out)

    def stream(self, paths: Sequence[str | os.PathLike], progress: bool = True,
               workers: int | None = None) -> Iterator[Result]:
        """One ``Result`` per file, in order; a file that fails carries its error and the others are scored. The
        files are decoded by ``workers`` processes (default ``loader.default_workers``) while the backbone runs."""
        workers = default_workers(self.device) if workers is None else workers
        return self.score([(p, p, None) for p in paths], progress, workers)

    def score(self, items: Sequence[tuple[object, ImageLike, str | None]], progress: bool = False,
              workers: int = 0) -> Iterator[Result]:
        """Results of (key, image or path, id or None) items, in order, prepared by ``workers`` processes (0: in
        this one) a batch or two ahead of the backbone (``qfm_iqm.features.loader``)."""
        self._forward = self._forward_for(len(items))
        prepare = Prepare(self.describer.prepare, GLOBAL_MAX_PIXELS if self.describer.recipe.global_view else None)
        bar = tqdm(total=len(items), disable=not progress, file=sys.stderr, unit="image", desc="score")
        keys = iter(key for key, _, _ in items)
        try:  # the bar ends its line however scoring ends (Ctrl-C, or the caller closing the stream)
            for batch in prepared_batches(prepare, [(image, image_id) for _, image, image_id in items],
                                          self.images_per_batch, workers, torch.device(self.device).type == "cuda"):
                yield from self._flush([(next(keys), prepared, error) for prepared, error in batch], bar)
        finally:
            bar.close()

    def _forward_for(self, total: int) -> StaticForward:
        """The backbone's forward for ``total`` images: compiled with ``compile`` "on", or "auto" from
        ``COMPILE_MIN_CROPS``; built once, and eager from the first compiler failure on."""
        recipe = self.describer.recipe
        crops = total * recipe.views
        wanted = self.compile == "on" or (self.compile == "auto" and crops >= COMPILE_MIN_CROPS)
        wanted = wanted and not recipe.native  # native views differ in size: torch.compile wants static shapes
        if wanted and self._forward.compiled is None:
            self._forward = StaticForward(self.describer, self._forward.crops, True)
        return self._forward if wanted else StaticForward(self.describer, self._forward.crops, False)

    def _flush(self, pending: list[Prepared], bar: tqdm) -> Iterator[Result]:
        ready = [p for p in pending if p[1] is not None]
        units = iter(self._units([p[1] for p in ready]) if ready else [])
        for key, prepared, error in pending:
            bar.update()
            if prepared is None:
                yield Result(key, error=error)
            else:
                raw = float(next(units))
                unit = min(max(raw, 0.0), 1.0)
                yield Result(key, raw, unit, self.mos(unit))

    def mos(self, unit: float | torch.Tensor) -> float | torch.Tensor:
        """A score on [0, 1] (1 = best) on the training dataset's MOS scale, in its direction."""
        span = self.high - self.low
        return self.low + unit * span if self.higher_is_better else self.high - unit * span

    def _units(self, prepared: list[tuple[torch.Tensor, torch.Tensor | None]]) -> np.ndarray:
        """Unclipped model scores (the pipeline's ``predict``) of prepared images."""
        rows = self.describer.rows(prepared, self._forward, self.batch_pixels)
        if self._forward.failed:  # no compiler, or compiling failed: eager from now on
            self.compile = "off"
        return predict(self.model, rows)


def load_model(model: str | Path = "livec", device: str = "cpu", batch_size: int = 40,
               compile: str = "auto") -> Scorer:
    """A ``Scorer`` of a shipped model by name (``"livec"``) or of a bundle folder (``results/<dataset>/model``)."""
    return Scorer(Bundle.open(model), device, batch_size, compile)
