"""Pair mining: quality-matched, semantically distant partners from a memory bank, and the
paper's observation.

The memory bank holds (semantic feature, normalised score) entries: the training split and,
optionally, the teacher-labelled expansion pool. For a query image i the candidates are the
bank entries with |y_k - y_i| <= tau (never i itself); when there are none, the ``k_fallback``
entries nearest in score. A *partner strategy* (registry ``STRATEGIES``) picks among them by the
cosine distance of the semantic features: the farthest (the method), a random one, or the
``top_k`` farthest whose features are averaged (ablations).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from qfm_iqm.registry import Registry

Strategy = Callable[[np.ndarray, np.ndarray, np.random.Generator, int], np.ndarray]
STRATEGIES: Registry[Strategy] = Registry("partner strategy")


@STRATEGIES.register("farthest")
def farthest(cand: np.ndarray, dist: np.ndarray, rng: np.random.Generator, top_k: int) -> np.ndarray:
    """The semantically most distant candidate (QFM-IQM)."""
    return cand[[np.argmax(dist[cand])]]


@STRATEGIES.register("random")
def random_candidate(cand: np.ndarray, dist: np.ndarray, rng: np.random.Generator, top_k: int) -> np.ndarray:
    """A uniformly random quality-matched candidate (ablation)."""
    return rng.choice(cand, 1)


@STRATEGIES.register("topk_mean")
def topk_mean(cand: np.ndarray, dist: np.ndarray, rng: np.random.Generator, top_k: int) -> np.ndarray:
    """The ``top_k`` most distant candidates; training adds the mean of their features (ablation)."""
    return cand[np.argsort(-dist[cand], kind="stable")[:top_k]]


def cosine_distance_matrix(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Pairwise cosine distances between the rows of ``x`` and of ``y`` (default ``x``)."""
    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True).clip(min=1e-12)

    return 1.0 - unit(x) @ unit(x if y is None else y).T


def mine_pairs(query_id: np.ndarray, query_score: np.ndarray, query_sem: np.ndarray, bank_id: np.ndarray,
               bank_score: np.ndarray, bank_sem: np.ndarray, tau: float, k_fallback: int, strategy: str,
               top_k: int = 1, seed: int = 0,
               bank_source: np.ndarray | None = None) -> pd.DataFrame:
    """One row per (query, partner): partner id and source, rank, score gap, cosine distance.

    A bank entry with the query's id is never its own partner.
    """
    pick = STRATEGIES[strategy]
    source = np.full(len(bank_id), "train", dtype=object) if bank_source is None else np.asarray(bank_source)
    dist = cosine_distance_matrix(query_sem, bank_sem)
    gap = np.abs(query_score[:, None] - bank_score[None, :])
    gap[np.asarray(query_id)[:, None] == np.asarray(bank_id)[None, :]] = np.inf
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(len(query_id)):
        cand = np.flatnonzero(gap[i] <= tau)
        fallback = cand.size == 0
        if fallback:
            cand = np.argsort(gap[i], kind="stable")[:k_fallback]
        for rank, j in enumerate(pick(cand, dist[i], rng, top_k)):
            rows.append({"image_id": query_id[i], "partner_id": bank_id[j], "source": source[j], "rank": rank,
                         "score_gap": gap[i, j], "cosine_distance": dist[i, j], "candidates": cand.size,
                         "fallback": fallback})
    return pd.DataFrame(rows)


def partner_matrix(table: pd.DataFrame, query_id: np.ndarray, bank_id: np.ndarray) -> np.ndarray:
    """(queries, partners) row indices into the bank, from a ``mine_pairs`` table.

    ``topk_mean`` finds fewer than ``top_k`` partners only when fewer candidates exist; such rows
    repeat their last partner to fill the matrix, so that partner weighs more in their mean.
    """
    bank = pd.Index(bank_id)
    groups = table.sort_values(["image_id", "rank"]).groupby("image_id", sort=False)["partner_id"]
    lists = {k: bank.get_indexer(v) for k, v in groups}
    missing = [q for q in query_id if q not in lists]
    if missing:
        raise KeyError(f"no partner mined for images {missing[:5]}")
    width = max(len(v) for v in lists.values())
    out = np.array([np.pad(lists[q], (0, width - len(lists[q])), mode="edge") for q in query_id])
    if (out < 0).any():
        raise KeyError("a mined partner is not in the memory bank")
    return out


def concentration(partners: np.ndarray) -> dict[str, float]:
    """How concentrated the chosen partners (memory-bank rows, one or k per image) are: how many distinct
    entries serve as partners, the share of the most used one, and the effective number of partners
    (exp of the entropy of their use; equal to ``distinct_partners`` when every entry is used equally)."""
    _, counts = np.unique(np.asarray(partners).ravel(), return_counts=True)
    share = counts / counts.sum()
    return {"distinct_partners": len(counts), "top_partner_share": float(share.max()),
            "effective_partners": float(np.exp(-(share * np.log(share)).sum()))}


def observation(score: np.ndarray, semantic: np.ndarray, large_gap: float, n_random: int,
                seed: int) -> tuple[dict, pd.DataFrame]:
    """How often near neighbours in feature space differ strongly in quality.

    Returns summary statistics (nearest-neighbour pairs against random pairs) and a sample of
    random pairs (cosine distance, |score gap|) for plotting.
    """
    dist = cosine_distance_matrix(semantic)
    np.fill_diagonal(dist, np.inf)
    nn = dist.argmin(1)
    nn_gap = np.abs(score - score[nn])
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(score), n_random)
    b = (a + rng.integers(1, len(score), n_random)) % len(score)
    rand_gap = np.abs(score[a] - score[b])
    stats = {
        "items": len(score),
        "large_gap": large_gap,
        "nn_fraction_large_gap": float((nn_gap > large_gap).mean()),
        "random_fraction_large_gap": float((rand_gap > large_gap).mean()),
        "nn_median_gap": float(np.median(nn_gap)),
        "random_median_gap": float(np.median(rand_gap)),
    }
    sample = pd.DataFrame({"cosine_distance": dist[a, b], "score_gap": rand_gap, "kind": "random"})
    nearest = pd.DataFrame({"cosine_distance": dist[np.arange(len(score)), nn], "score_gap": nn_gap,
                            "kind": "nearest"})
    return stats, pd.concat([sample, nearest], ignore_index=True)
