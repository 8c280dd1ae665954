"""What several stages unpack alike: parts of a split, cached features, backbone weights, model arguments."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from types import SimpleNamespace as NS
from typing import Any

import pandas as pd

from qfm_iqm.data import splits
from qfm_iqm.data.meta import read_meta
from qfm_iqm.features.cache import FeatureSet, reads_activations
from qfm_iqm.method.memory import StudentMemory, student_memory
from qfm_iqm.settings import resolve_weights


def split_part(meta: str, table: str | None, split: int | str, part: str) -> pd.DataFrame:
    """Meta rows (the file ``meta``) of one part of one split of the splits file ``table`` (``splits.part_rows``)."""
    return splits.part_rows(read_meta(meta), None if table is None else pd.read_csv(table, dtype={"image_id": str}),
                            split, part)


def part(input: NS, split: int | str, name: str) -> pd.DataFrame:
    """Meta rows of the part ``name`` of one split (the job's ``meta`` and ``splits``; no splits for ``splits.ALL``)."""
    return split_part(input.meta, getattr(input, "splits", None), split, name)


def labelled(input: NS, split: int | str, name: str) -> tuple[pd.DataFrame, FeatureSet]:
    """Meta rows and cached features of one part of one split."""
    rows = part(input, split, name)
    return rows, FeatureSet.load(input.features).subset(rows["image_id"])


@functools.cache
def cached(path: str) -> FeatureSet:
    """A feature or activation cache, read once per job however many models read it."""
    return FeatureSet.load(path)


def activations(path: str | None, models: Iterable[Any], rows: pd.DataFrame) -> FeatureSet | None:
    """The cached activations at ``path`` of ``rows`` when one of ``models`` reads them, else None."""
    if not any(reads_activations(model) for model in models):
        return None
    return cached(path).subset(rows["image_id"])


def weights(backbone: dict, input: NS) -> str:
    """The weights ``backbone`` (a config section) asks for; the job's ``weights`` input is the converted package."""
    return resolve_weights(backbone, getattr(input, "weights", None))


def model_args(settings: dict, input: NS) -> dict:
    """``qfm_iqm.method.partial.model_for``'s backbone arguments from a rule's ``model`` params (empty for pooled
    heads)."""
    if not settings:
        return {}
    from qfm_iqm.method.partial import partial_spec  # imports timm: only the jobs that build a model pay for it

    backbone = settings["backbone"]
    return {"backbone": backbone["name"], "weights": weights(backbone, input), "partial": partial_spec(settings)}


def memory(input: NS, rows: pd.DataFrame, student: dict) -> StudentMemory:
    """The memory of a student of ``rows``: the job's pool and mined pairs, when it has them."""
    return student_memory(rows["image_id"].to_numpy(), student["matching"].get("memory"),
                          getattr(input, "pool_labels", None), getattr(input, "pool_features", None),
                          getattr(input, "pairs", None))
