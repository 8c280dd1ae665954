"""Natural photos that ship inside pip-installed packages (no download), by name."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from qfm_iqm.io import read_rgb

PHOTOS: dict[str, Callable[[], np.ndarray]] = {}


def _skimage(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[index] if index is not None else img

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    return np.asarray(read_rgb(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


for _name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
              "immunohistochemistry", "camera", "brick", "grass", "gravel"):
    PHOTOS[_name] = _skimage(_name)
PHOTOS["motorcycle_left"] = _skimage("stereo_motorcycle", 0)
PHOTOS["motorcycle_right"] = _skimage("stereo_motorcycle", 1)
PHOTOS["china"] = _sklearn("china.jpg")
PHOTOS["flower"] = _sklearn("flower.jpg")
PHOTOS["grace_hopper"] = _grace_hopper


def load_photo(name: str, short_side: int) -> np.ndarray:
    """RGB float image in [0, 1], resized so its short side is ``short_side`` pixels."""
    if name not in PHOTOS:
        raise KeyError(f"unknown package photo {name!r}; known: {sorted(PHOTOS)}")
    img = Image.fromarray(np.asarray(PHOTOS[name]())).convert("RGB")
    return resize_short_side(img, short_side)


def resize_short_side(img: Image.Image, short_side: int) -> np.ndarray:
    scale = short_side / min(img.size)
    size = (round(img.width * scale), round(img.height * scale))
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.float64) / 255.0
