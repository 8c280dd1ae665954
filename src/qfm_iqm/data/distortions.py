"""Synthetic distortions (KADID-style types, five levels each), one registry entry per type.

Each function maps an RGB float image in [0, 1] (H, W, 3), a level in 1..5 and a random
generator to a distorted image in [0, 1]. Level 1 is mild, level 5 severe.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

Distortion = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
DISTORTIONS: dict[str, Distortion] = {}
MAX_LEVEL = 5


def register_distortion(name: str) -> Callable[[Distortion], Distortion]:
    def wrap(fn: Distortion) -> Distortion:
        DISTORTIONS[name] = fn
        return fn

    return wrap


def _param(values: tuple[float, ...], level: int) -> float:
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"distortion level must be in 1..{MAX_LEVEL}, got {level}")
    return values[level - 1]


@register_distortion("gaussian_blur")
def gaussian_blur(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _param((0.6, 1.2, 2.0, 3.2, 5.0), level)
    return ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0))


@register_distortion("gaussian_noise")
def gaussian_noise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    std = _param((0.02, 0.045, 0.08, 0.13, 0.2), level)
    return np.clip(img + rng.normal(0.0, std, img.shape), 0.0, 1.0)


@register_distortion("jpeg")
def jpeg(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    quality = int(_param((50, 30, 18, 10, 5), level))
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64) / 255.0


@register_distortion("contrast")
def contrast(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    factor = _param((0.75, 0.55, 0.4, 0.28, 0.18), level)
    return np.clip(img.mean() + factor * (img - img.mean()), 0.0, 1.0)


@register_distortion("overexposure")
def overexposure(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    gain = _param((1.3, 1.6, 2.0, 2.6, 3.4), level)
    return np.clip(img * gain, 0.0, 1.0)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def apply(name: str, img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Apply the registered distortion ``name``; unknown names raise naming the choices."""
    if name not in DISTORTIONS:
        raise KeyError(f"unknown distortion {name!r}; known: {sorted(DISTORTIONS)}")
    return DISTORTIONS[name](img, level, rng)
