"""Pair mining: quality-matched, semantically distant partners, and the paper's observation.

For a training image i, candidates are the items with |y_k - y_i| <= tau (k != i); when there
are none, the ``k_fallback`` items nearest in score. Among candidates the partner is the one
with the largest cosine distance of the semantic (pooled deep) feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def cosine_distance_matrix(x: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    return 1.0 - unit @ unit.T


def mine_pairs(image_id: np.ndarray, score: np.ndarray, semantic: np.ndarray, tau: float,
               k_fallback: int) -> pd.DataFrame:
    """One row per item: its partner, the score gap and the semantic cosine distance."""
    dist = cosine_distance_matrix(semantic)
    gap = np.abs(score[:, None] - score[None, :])
    np.fill_diagonal(gap, np.inf)
    rows = []
    for i in range(len(score)):
        cand = np.flatnonzero(gap[i] <= tau)
        fallback = cand.size == 0
        if fallback:
            cand = np.argsort(gap[i], kind="stable")[:k_fallback]
        j = cand[np.argmax(dist[i, cand])]
        rows.append({"image_id": image_id[i], "partner_id": image_id[j], "score_gap": gap[i, j],
                     "cosine_distance": dist[i, j], "candidates": cand.size, "fallback": fallback})
    return pd.DataFrame(rows)


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
        "items": int(len(score)),
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
