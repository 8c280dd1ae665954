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

from qfm_iqm.io import reading, write_npz


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
        with reading(path), np.load(path) as z:
            return cls(z["image_id"], z["features"], list(z["block_names"]), [int(s) for s in z["block_sizes"]])


NARROWING_KEYS = ("flip", "stages", "pooling")  # what a cache of a wider recipe can be narrowed to


def narrowed(feats: FeatureSet, have: dict, want: dict) -> FeatureSet:
    """The features of the recipe ``want`` cut out of ``feats``, those of ``have``: a recipe (the config's ``crops``)
    that may differ from ``want`` only by flips ``want`` lacks, or by more pooled stages or statistics. ValueError
    when ``have`` does not cover ``want``."""
    differ = [k for k in have if have[k] != want.get(k) and k not in NARROWING_KEYS]
    if differ or (want["flip"] and not have["flip"]):
        raise ValueError(f"features of {crops_tag(have)} do not hold those of {crops_tag(want)}")
    stats = ("mean",) if want["pooling"] == "mean" else ("mean", "std")
    keep = [name for name in feats.block_names if name == "final_mean" or (
        name.split("_")[1] in stats and (want["stages"] == "all" or int(name.split("_")[0][5:]) in want["stages"]))]
    if want["stages"] != "all" and len(keep) != len(want["stages"]) * len(stats) + 1:
        raise ValueError(f"features of {crops_tag(have)} do not hold those of {crops_tag(want)}")
    columns = np.concatenate([np.arange(sum(feats.block_sizes[:i]), sum(feats.block_sizes[:i + 1]))
                              for i, name in enumerate(feats.block_names) if name in keep])
    views = slice(None, None, 2) if have["flip"] and not want["flip"] else slice(None)
    return FeatureSet(feats.image_id, feats.features[:, views][..., columns], keep,
                      [size for name, size in zip(feats.block_names, feats.block_sizes, strict=True) if name in keep])


def crops_tag(crops: dict) -> str:
    """A feature recipe (the config's ``crops``) in cache paths: ``c{n}s{size}r{seed}`` (``g`` with the global view),
    or ``native{max_side}``; then ``f`` with flips, ``_st`` and the pooled stage indices unless all (``_stfinal``:
    none), ``_mean``
    with means only (``crops`` validated: every key filled in). The default recipe's tag is the one from before the
    later keys existed."""
    if crops["input"] == "native":
        tag = f"native{crops['max_side']}"
    else:
        tag = "c{n}s{size}r{seed}".format(**crops) + ("g" if crops.get("global_view") else "")
    tag += "f" if crops["flip"] else ""
    if not isinstance(stages := crops["stages"], str):
        tag += "_st" + ("-".join(map(str, sorted(stages))) or "final")
    return tag + ("_mean" if crops["pooling"] == "mean" else "")


def cut_tag(from_block: int) -> str:
    """The name of the cut at block ``from_block`` (``qfm_iqm.method.partial``) in the workflow's paths: its
    activation cache's folder, and its extraction jobs' logs and benchmarks."""
    return f"b{from_block}"


def cache_dir(dataset: str, backbone: str, crops: dict, from_block: int | None = None) -> str:
    """The workflow's folder of a dataset's caches (``labelled.npz``, ``pool.npz``): pooled features, or with
    ``from_block`` the activations cached at that cut (``cut_tag``)."""
    if from_block is None:
        return f"results/{dataset}/features/{backbone}/{crops_tag(crops)}"
    return f"results/{dataset}/activations/{backbone}/{crops_tag(crops)}/{cut_tag(from_block)}"


def reads_activations(model: Any) -> bool:
    """Whether a trained model reads cached activations: one with a trained backbone top (``qfm_iqm.method.partial``)."""
    return "partial" in model.spec


def model_input(model: Any, pooled: FeatureSet, activations: FeatureSet | None) -> np.ndarray:
    """What ``model`` reads of some images: their cached ``activations`` when it ``reads_activations``, else their
    ``pooled`` features."""
    return activations.features if reads_activations(model) else pooled.features
