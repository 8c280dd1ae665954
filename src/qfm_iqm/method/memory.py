"""A student's memory bank and what it reads besides its labelled part.

The bank holds the labelled training images and, with ``memory: train_pool``, the teacher-labelled expansion
pool after them (pool ids prefixed with ``POOL_PREFIX``, so that they never collide with labelled ids).
Partners are mined from it (``qfm_iqm.method.pairs``) and the semantic noise reads their features; distillation
reads the pool's teacher scores. Kept free of torch, so that the pair-mining jobs start quickly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.method import pairs
from qfm_iqm.settings import matching_on

POOL_PREFIX = "pool/"
WITH_POOL = "train_pool"  # the `student.matching.memory` whose bank holds the teacher-labelled pool


def pool_in_memory(student: dict) -> bool:
    """Whether a student config's memory bank holds the teacher-labelled pool (matching on, ``memory: train_pool``)."""
    return matching_on(student) and student["matching"]["memory"] == WITH_POOL


def uses_pool(student: dict) -> bool:
    """Whether a student config reads the teacher-labelled pool: to distil (``kd_weight`` > 0) or in its memory bank."""
    return student["distillation"]["kd_weight"] > 0 or pool_in_memory(student)


def pool_labels(pool_meta: pd.DataFrame, crop_scores: np.ndarray) -> pd.DataFrame:
    """The teacher's labels of the pool images ``pool_meta`` from its (images, crops) scores: image_id, distortion,
    level, teacher_score (the mean over crops) and one column per crop (``crop0``, ...)."""
    crops = pd.DataFrame(crop_scores, columns=[f"crop{c}" for c in range(crop_scores.shape[1])])
    return pd.concat([pool_meta[["image_id", "distortion", "level"]].assign(teacher_score=crop_scores.mean(1)), crops],
                     axis=1)


def read_pool(labels: str | Path, features: str | Path) -> tuple[pd.DataFrame, FeatureSet]:
    """The pool's teacher labels (a ``pool_labels`` table) and cached features, in one order."""
    table = pd.read_csv(labels, dtype={"image_id": str})
    return table, FeatureSet.load(features).subset(table["image_id"])


def crop_scores(labels: pd.DataFrame) -> np.ndarray:
    """The teacher's (images, crops) scores in a ``pool_labels`` table."""
    return labels.filter(regex=r"^crop\d+$").to_numpy()


def pool_bank_ids(pool_ids: Iterable) -> np.ndarray:
    """Memory-bank ids of pool images."""
    return np.array([POOL_PREFIX + str(i) for i in pool_ids], dtype=object)


def bank_ids(train_ids: np.ndarray, pool_ids: Iterable | None = None) -> np.ndarray:
    """Memory-bank ids: the labelled training images', then, when given, the pool images' (``pool_bank_ids``)."""
    return np.asarray(train_ids) if pool_ids is None else np.concatenate([train_ids, pool_bank_ids(pool_ids)])


def mine_partners(ids: np.ndarray, score: np.ndarray, semantic: np.ndarray, strategy: str, tau: float,
                  k_fallback: int, top_k: int = 1, seed: int = 0, pool_ids: Iterable | None = None,
                  pool_score: np.ndarray | None = None,
                  pool_semantic: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Partners of the labelled training images (``ids``, normalised scores, semantic features) in their memory
    bank: themselves, then, with ``pool_ids``, the pool (its teacher scores and semantic features). Returns
    ``pairs.mine_pairs``' table (a partner's ``source``: "train" or "pool") and the bank's ids."""
    bank = bank_ids(ids, pool_ids)
    source = np.full(len(bank), "train", dtype=object)
    source[len(ids):] = "pool"
    bank_score, bank_semantic = score, semantic
    if pool_ids is not None:
        bank_score, bank_semantic = np.concatenate([score, pool_score]), np.concatenate([semantic, pool_semantic])
    table = pairs.mine_pairs(ids, score, semantic, bank, bank_score, bank_semantic, tau, k_fallback, strategy, top_k,
                             seed, source)
    return table, bank


def student_inputs(x: np.ndarray, kd_weight: float, x_pool: np.ndarray | None = None,
                   y_pool: np.ndarray | None = None, partners: np.ndarray | None = None,
                   pool_in_memory: bool = False) -> dict[str, np.ndarray]:
    """``qfm_iqm.method.train.train``'s inputs of a student besides its labelled features ``x`` and scores: the
    pool's features ``x_pool`` and teacher crop scores ``y_pool`` to distil (when ``kd_weight`` > 0), and its
    ``partners``' rows in the memory bank with the bank's features (``x``, then ``x_pool`` with ``pool_in_memory``)."""
    extra = {}
    if x_pool is not None and kd_weight > 0:
        extra.update(x_pool=x_pool, y_pool=y_pool)
    if partners is not None:
        extra.update(partners=partners, memory=np.concatenate([x, x_pool]) if pool_in_memory else x)
    return extra


@dataclass(frozen=True)
class StudentMemory:
    """What a student reads besides its labelled part: the pool's teacher labels and features (None unless it
    distils or keeps the pool in memory), its memory bank's ids and its partners' rows there (None without
    matching)."""

    labels: pd.DataFrame | None
    pool_features: FeatureSet | None
    bank_ids: np.ndarray
    partners: np.ndarray | None

    def train_inputs(self, x: np.ndarray, kd_weight: float) -> dict[str, np.ndarray]:
        """``student_inputs`` of the student whose labelled features are ``x``."""
        return student_inputs(x, kd_weight, None if self.pool_features is None else self.pool_features.features,
                              None if self.labels is None else crop_scores(self.labels), self.partners,
                              len(self.bank_ids) > len(x))

    def info(self, labelled: int, kd_weight: float) -> dict:
        """How many labelled and pool images the student used, how big its memory was and how concentrated its
        partners are (``pairs.concentration``)."""
        distils, matched = self.labels is not None and kd_weight > 0, self.partners is not None
        return {"labelled_images": labelled, "pool_images_distilled": len(self.labels) if distils else 0,
                "memory_entries": len(self.bank_ids) if matched else 0,
                "partners_from_pool": float((self.partners >= labelled).mean()) if matched else 0.0,
                **(pairs.concentration(self.partners) if matched else {})}


def student_memory(train_ids: np.ndarray, memory: str | None, pool_labels: str | Path | None = None,
                   pool_features: str | Path | None = None, mined: str | Path | None = None) -> StudentMemory:
    """The ``StudentMemory`` of a student of the training images ``train_ids``, from the workflow's files: the pool's
    labels and features (``read_pool``), which join the bank with ``memory`` ``WITH_POOL``, and the mined pairs
    (``mine_partners``' table); each when given."""
    labels = features = None
    bank = train_ids
    if pool_labels is not None:
        labels, features = read_pool(pool_labels, pool_features)
        if memory == WITH_POOL:
            bank = bank_ids(train_ids, labels["image_id"])
    partners = None
    if mined is not None:
        table = pd.read_csv(mined, dtype={"image_id": str, "partner_id": str})
        partners = pairs.partner_matrix(table, train_ids, bank)
    return StudentMemory(labels, features, bank, partners)
