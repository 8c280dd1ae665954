"""The feature cache: (images, crops, dims) arrays with their block layout, as .npz files, and where the
workflow keeps them.

Kept free of torch so that stages reading the cache start quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qfm_iqm.io import write_npz


@dataclass
class FeatureSet:
    """Cached features: (images, crops, dims) array plus block layout."""

    image_id: np.ndarray
    features: np.ndarray
    block_names: list[str]
    block_sizes: list[int]

    def block(self, name: str) -> np.ndarray:
        """The (images, crops, size) slice of one named block."""
        start = sum(self.block_sizes[: self.block_names.index(name)])
        return self.features[..., start: start + self.block_sizes[self.block_names.index(name)]]

    def semantic(self) -> np.ndarray:
        """Crop-averaged final-stage descriptor: the semantic feature used for matching."""
        return self.block("final_mean").mean(1)

    def subset(self, image_ids: pd.Series) -> FeatureSet:
        """The features of ``image_ids``, in that order (all must be present)."""
        pos = pd.Index(self.image_id).get_indexer(image_ids.astype(str))
        if (pos < 0).any():
            raise KeyError(f"images without features: {list(image_ids[pos < 0])[:5]}")
        return FeatureSet(self.image_id[pos], self.features[pos], self.block_names, self.block_sizes)

    def save(self, path: str | Path) -> None:
        write_npz(path, image_id=self.image_id.astype(str), features=self.features,
                  block_names=np.array(self.block_names), block_sizes=np.array(self.block_sizes))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        with np.load(path) as z:
            return cls(z["image_id"], z["features"], list(z["block_names"]), [int(s) for s in z["block_sizes"]])


def crops_tag(crops: dict) -> str:
    """A crop recipe (the config's ``crops``) in cache paths: ``c{n}s{size}r{seed}``, plus ``g`` with the global view."""
    return "c{n}s{size}r{seed}".format(**crops) + ("g" if crops.get("global_view") else "")


def cache_dir(dataset: str, backbone: str, crops: dict, from_block: int | None = None) -> str:
    """The workflow's folder of a dataset's caches (``labelled.npz``, ``pool.npz``): pooled features, or with
    ``from_block`` the activations cached at that cut (``qfm_iqm.method.partial``)."""
    if from_block is None:
        return f"results/{dataset}/features/{backbone}/{crops_tag(crops)}"
    return f"results/{dataset}/activations/{backbone}/{crops_tag(crops)}/b{from_block}"


def reads_activations(model: Any) -> bool:
    """Whether a trained model reads cached activations: one with a trained backbone top (``qfm_iqm.method.partial``)."""
    return "partial" in model.spec


def model_input(model: Any, pooled: FeatureSet, activations: FeatureSet | None) -> np.ndarray:
    """What ``model`` reads of some images: their cached ``activations`` when it ``reads_activations``, else their
    ``pooled`` features."""
    return activations.features if reads_activations(model) else pooled.features
