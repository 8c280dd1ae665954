"""Pair mining: the matcher, the memory bank with the pool, the ablation strategies, and the paper's observation."""

from __future__ import annotations

import numpy as np
import pytest

from qfm_iqm.method import pairs


def test_matcher_picks_quality_similar_semantically_farthest_partner() -> None:
    ids = np.array(["a", "b", "c", "d"])
    score = np.array([0.50, 0.51, 0.52, 0.90])
    semantic = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.1], [-1.0, 0.0]])
    table = pairs.mine_pairs(ids, score, semantic, ids, score, semantic, tau=0.03, k_fallback=1,
                             strategy="farthest").set_index("image_id")
    # c is within tau of a and opposite in feature space; d (farther still) differs in quality
    assert table.loc["a", "partner_id"] == "c" and not table.loc["a", "fallback"]
    assert table.loc["c", "partner_id"] == "a"
    assert table.loc["d", "fallback"] and table.loc["d", "partner_id"] == "c"  # nearest in score
    assert table.loc["a", "cosine_distance"] == pytest.approx(1 - (-1.0) / np.hypot(-1, 0.1))


def test_memory_bank_with_pool_and_the_ablation_strategies() -> None:
    ids, score = np.array(["a", "b", "c"]), np.array([0.50, 0.51, 0.52])
    semantic = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    bank_id = np.array([*ids, "p0", "p1", "p2"])
    bank_score = np.array([*score, 0.505, 0.9, 0.49])
    bank_sem = np.vstack([semantic, [[-1.0, 0.0], [-1.0, 0.0], [-0.6, -0.8]]])
    source = np.array(["train"] * 3 + ["pool"] * 3)
    args = (ids, score, semantic, bank_id, bank_score, bank_sem, 0.03, 1)
    far = pairs.mine_pairs(*args, strategy="farthest", bank_source=source).set_index("image_id")
    assert far.loc["a", "partner_id"] == "p0" and far.loc["a", "source"] == "pool"  # p1 is farther but 0.4 off
    assert far.loc["b", "partner_id"] == "p2"
    top = pairs.mine_pairs(*args, strategy="topk_mean", top_k=2)
    assert top[top["image_id"] == "a"]["partner_id"].tolist() == ["p0", "p2"]
    assert top[top["image_id"] == "a"]["rank"].tolist() == [0, 1]
    draws = {pairs.mine_pairs(*args, strategy="random", seed=s).set_index("image_id").loc["a", "partner_id"]
             for s in range(20)}
    assert draws == {"b", "c", "p0", "p2"}  # every quality-matched candidate, never p1 or a itself
    matrix = pairs.partner_matrix(top, ids, bank_id)
    assert matrix.shape == (3, 2) and bank_id[matrix[0]].tolist() == ["p0", "p2"]
    with pytest.raises(KeyError, match=r"^unknown partner strategy 'nearest'; known: \['farthest', 'random', 'topk_mean'\]$"):
        pairs.mine_pairs(*args, strategy="nearest")


def test_partner_concentration() -> None:
    even = pairs.concentration(np.array([0, 1, 2, 3]))
    assert even == {"distinct_partners": 4, "top_partner_share": 0.25, "effective_partners": pytest.approx(4.0)}
    hub = pairs.concentration(np.array([[5, 5], [5, 5], [5, 1]]))
    assert hub["distinct_partners"] == 2 and hub["top_partner_share"] == pytest.approx(5 / 6)
    assert 1.0 < hub["effective_partners"] < 2.0


def test_observation_counts_near_neighbours_with_large_gaps() -> None:
    semantic = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], dtype=float)
    score = np.array([0.0, 1.0, 0.5, 0.5])
    stats, sample = pairs.observation(score, semantic, large_gap=0.2, n_random=50, seed=0)
    assert stats["nn_fraction_large_gap"] == 0.5 and stats["items"] == 4
    assert set(sample["kind"]) == {"random", "nearest"} and (sample["score_gap"] <= 1).all()
