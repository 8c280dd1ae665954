"""The feature cache: (images, crops, dims) arrays with their block layout, as .npz files.

Kept free of torch so that stages reading the cache start quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
