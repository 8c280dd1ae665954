"""Train/test splits: repeated random 80/20 partitions, disjoint by reference content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qfm_iqm.io import InputError

OFFICIAL_TEST = "test"  # the official_part value of test images; every other value is training data
ALL = "all"  # the split whose training part is every image: the final, deployable model's


def parse_split(split: str | int) -> int | str:
    """A split index, or ``ALL``."""
    return ALL if str(split) == ALL else int(split)


MIN_PART_IMAGES = 2  # per part of a split: evaluation compares test images in pairs (observation, sensitivity),
# and an image's partner in the training part is another image


def make_splits(meta: pd.DataFrame, n_splits: int, test_fraction: float, seed: int,
                source: str | Path = "the dataset") -> pd.DataFrame:
    """Long table (split, image_id, part) with part in {train, test}.

    Whole reference groups (``ref_id``) go to one side, so distorted versions of one photo
    never appear on both; for authentic datasets every image is its own reference. A dataset too small for
    ``MIN_PART_IMAGES`` in each part of every split is an InputError naming ``source`` and the numbers.
    """
    refs = np.array(sorted(meta["ref_id"].astype(str).unique()))
    n_test = max(1, round(test_fraction * len(refs)))
    parts = []
    for split in range(n_splits):
        test_refs = set(np.random.default_rng([seed, split]).choice(refs, min(n_test, len(refs)), replace=False))
        part = np.where(meta["ref_id"].astype(str).isin(test_refs), "test", "train")
        parts.append(pd.DataFrame({"split": split, "image_id": meta["image_id"].astype(str), "part": part}))
    table = pd.concat(parts, ignore_index=True)
    check_part_sizes(table, f"{source} ({len(meta)} images in {len(refs)} reference groups, test fraction "
                            f"{test_fraction})")
    return table


def check_part_sizes(table: pd.DataFrame, source: str) -> None:
    """InputError naming ``source``, the split and its part sizes when a part holds fewer than ``MIN_PART_IMAGES``."""
    sizes = table.groupby(["split", "part"]).size().unstack("part").reindex(columns=["train", "test"]).fillna(0)
    small = sizes[(sizes < MIN_PART_IMAGES).any(axis=1)]
    if len(small):
        split, (train, test) = small.index[0], small.iloc[0].astype(int)
        raise InputError(f"{source}: too small to split: split {split} has {train} training and {test} test images; "
                         f"each part needs at least {MIN_PART_IMAGES} (more images, or another test fraction)")


def official_split(meta: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """The dataset's own train/test split (its ``official_part`` column) as split 0; validation
    images train, since the protocol never selects on the test part."""
    if "official_part" not in meta.columns:
        raise InputError(f"{source}: no official_part column, so this dataset defines no official split "
                         "(use split: random)")
    part = np.where(meta["official_part"].astype(str) == OFFICIAL_TEST, "test", "train")
    table = pd.DataFrame({"split": 0, "image_id": meta["image_id"].astype(str), "part": part})
    check_part_sizes(table, f"{source} (official split)")
    return table


def split_ids(splits: pd.DataFrame, split: int, part: str) -> pd.Series:
    """Image ids of one part of one split, in table order."""
    sel = splits[(splits["split"] == split) & (splits["part"] == part)]
    return sel["image_id"].astype(str).reset_index(drop=True)


def part_rows(meta: pd.DataFrame, splits: pd.DataFrame | None, split: int | str, part: str) -> pd.DataFrame:
    """``meta``'s rows of one part of one split of the table ``splits``, in table order; the training part of
    ``ALL`` is every image (no table needed)."""
    if split == ALL:
        if part != "train":
            raise ValueError(f"split {ALL!r} has no {part} part")
        return meta.reset_index(drop=True)
    return meta.set_index("image_id", drop=False).loc[split_ids(splits, split, part)].reset_index(drop=True)


def carve_out(rows: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a validation carve-out of ``rows`` (a training part): whole reference groups,
    each held out with probability ``fraction``; for model selection that never reads the test part."""
    refs = rows["ref_id"].astype(str).to_numpy()
    unique = np.unique(refs)
    held = unique[np.random.default_rng(seed).random(len(unique)) < fraction]
    return np.isin(refs, held)
