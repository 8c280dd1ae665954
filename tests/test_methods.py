"""Splits, pair mining, models, training and evaluation on constructed data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from qfm_iqm.data import splits
from qfm_iqm.evaluation import evaluate
from qfm_iqm.io import InputError
from qfm_iqm.method import pairs, train
from qfm_iqm.method.checkpoint import load_model, save_model
from qfm_iqm.method.gate import ChannelGate
from qfm_iqm.method.model import QualityModel


def test_splits_are_reference_disjoint_and_reproducible() -> None:
    meta = pd.DataFrame({"image_id": [f"i{k}" for k in range(50)], "ref_id": [f"r{k // 5}" for k in range(50)]})
    table = splits.make_splits(meta, n_splits=4, test_fraction=0.2, seed=3)
    assert table.equals(splits.make_splits(meta, n_splits=4, test_fraction=0.2, seed=3))
    refs = meta.set_index("image_id")["ref_id"]
    for s in range(4):
        test = set(refs[splits.split_ids(table, s, "test")])
        train_refs = set(refs[splits.split_ids(table, s, "train")])
        assert len(test) == 2 and not test & train_refs
    assert splits.split_ids(table, 0, "test").tolist() != splits.split_ids(table, 1, "test").tolist()


def test_matcher_picks_quality_similar_semantically_farthest_partner() -> None:
    ids = np.array(["a", "b", "c", "d"])
    score = np.array([0.50, 0.51, 0.52, 0.90])
    semantic = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.1], [-1.0, 0.0]])
    table = pairs.mine_pairs(ids, score, semantic, ids, score, semantic, tau=0.03, k_fallback=1).set_index("image_id")
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
    far = pairs.mine_pairs(*args, bank_source=source).set_index("image_id")
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
    with pytest.raises(KeyError, match="unknown partner strategy"):
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


def test_gate_weights_lie_in_unit_interval() -> None:
    gate = ChannelGate(32, reduction=4)
    x = torch.randn(7, 32) * 10
    w = gate.weights(x)
    assert w.shape == (7, 32) and (w > 0).all() and (w < 1).all()
    assert torch.allclose(gate(x), x * w)


def _toy(n: int = 64, crops: int = 3, dim: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, crops, dim)).astype(np.float32)
    y = 1 / (1 + np.exp(-x.mean(1)[:, :3].sum(1)))
    return x, y


CFG = train.TrainConfig(epochs=25, lr=3e-3, weight_decay=0.0, batch_size=32, loss="smooth_l1_plcc", seed=0,
                        noise_form="add")


def test_training_learns_and_is_deterministic(tmp_path) -> None:
    x, y = _toy()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = train.build_model(x.shape[-1], {"head": "mlp", "hidden": 32, "dropout": 0.0, "gate": True})
        history = train.train(model, x, y, CFG)
        runs.append(train.predict(model, x))
    assert history["loss"].iloc[-1] < 0.5 * history["loss"].iloc[0]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert evaluate.metrics(y, runs[0])["srcc"] > 0.85
    save_model(model, tmp_path / "m.pt")
    np.testing.assert_allclose(train.predict(load_model(tmp_path / "m.pt"), x), runs[1], rtol=1e-6)


def test_distillation_term_only_with_a_pool() -> None:
    x, y = _toy()
    xp, _ = _toy(seed=1)
    yp = np.full(xp.shape[:2], 0.5, dtype=np.float32)
    kd = train.TrainConfig(**{**CFG.__dict__, "kd_weight": 1.0, "epochs": 2})
    plain = train.train(QualityModel(x.shape[-1], head="linear"), x, y, kd)
    distilled = train.train(QualityModel(x.shape[-1], head="linear"), x, y, kd, x_pool=xp, y_pool=yp)
    assert (plain["loss_kd"] == 0).all() and (distilled["loss_kd"] > 0).all()
    assert np.allclose(distilled["loss"], distilled["loss_clean"] + distilled["loss_kd"], atol=1e-5)


def test_metrics_summary_and_ridge() -> None:
    s = np.linspace(0, 1, 20)
    m = evaluate.metrics(s, s ** 2)
    assert m["srcc"] == pytest.approx(1.0) and m["krcc"] == pytest.approx(1.0) and m["plcc"] < 1.0
    a = pd.DataFrame({"model": "a", "split": range(8), "srcc": np.linspace(0.1, 0.8, 8), "plcc": 0.5, "krcc": 0.5,
                      "rmse": 0.1})
    b = a.assign(model="b", srcc=a["srcc"] + 0.05)
    c = a.assign(model="c", srcc=a["srcc"] + [0.01, -0.01] * 4)
    summary = evaluate.summarise(pd.concat([a, b, c]), reference="a", resamples=500).set_index("model")
    assert summary.loc["a", "srcc_median"] == pytest.approx(0.45) and summary.loc["a", "srcc_iqr"] == pytest.approx(0.35)
    assert summary.loc["a", "srcc_ci_low"] < 0.45 < summary.loc["a", "srcc_ci_high"]
    assert summary.loc["a", "plcc_ci_low"] == summary.loc["a", "plcc_ci_high"] == 0.5  # no spread, no interval
    # b beats a on all 8 splits: the exact two-sided signed-rank p is 2 / 2**8; c is a coin toss
    assert summary.loc["b", "srcc_p_wilcoxon_vs_a"] == pytest.approx(2 / 2 ** 8) and summary.loc["b", "srcc_wins_vs_a"] == 8
    assert summary.loc["c", "srcc_p_wilcoxon_vs_a"] > 0.5 and np.isnan(summary.loc["a", "srcc_p_corrected_vs_a"])
    assert summary.loc["b", "srcc_diff_vs_a"] == pytest.approx(0.05) and summary.loc["b", "srcc_p_corrected_vs_a"] < 1e-10
    table = evaluate.to_markdown(summary.reset_index(), "t", reference="a")
    assert "| b | 8 | 0.500 (0.350) [" in table and "| b | SRCC | +0.0500 [+0.0500, +0.0500] |" in table
    # a model run on 6 of the splits (ablation.splits) is tested against the reference on those 6
    d = b.iloc[:6].assign(model="d")
    summary = evaluate.summarise(pd.concat([a, d]), reference="a", resamples=500).set_index("model")
    assert summary.loc["d", "splits"] == 6 and summary.loc["d", "srcc_wins_vs_a"] == 6
    assert summary.loc["d", "srcc_p_wilcoxon_vs_a"] == pytest.approx(2 / 2 ** 6)
    assert not summary.loc["d", "srcc_too_few_splits_vs_a"]
    x, y = _toy(200)
    pred = evaluate.ridge_floor(x[:150], y[:150], x[150:], [0.1, 1.0])
    assert evaluate.metrics(y[150:], pred)["srcc"] > 0.8


@pytest.mark.parametrize("name", sorted(train.LOSSES))
def test_every_loss_is_zero_only_for_perfect_predictions(name: str) -> None:
    y = torch.linspace(0, 1, 16)
    loss = train.LOSSES[name]
    assert loss(y, y).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(1 - y, y).item() > 0.1


def test_semantic_noise_terms_only_when_switched_on() -> None:
    x, y = _toy()
    partners = np.roll(np.arange(len(x)), 1)
    base = {**CFG.__dict__, "epochs": 2}
    off = train.train(QualityModel(x.shape[-1], head="linear"), x, y, train.TrainConfig(**base), partners=partners)
    on_cfg = train.TrainConfig(**{**base, "adv_weight": 1.0, "sens_weight": 0.5, "eps": 0.3})
    on = train.train(QualityModel(x.shape[-1], head="linear"), x, y, on_cfg, partners=partners)
    no_pairs = train.train(QualityModel(x.shape[-1], head="linear"), x, y, on_cfg)
    assert (off[["loss_adv", "loss_sens"]] == 0).all().all() and (no_pairs[["loss_adv", "loss_sens"]] == 0).all().all()
    assert (on["loss_adv"] > 0).all() and (on["loss_sens"] > 0).all()
    np.testing.assert_allclose(on["loss"], on["loss_clean"] + on["loss_adv"] + 0.5 * on["loss_sens"], atol=1e-5)


def test_zero_noise_leaves_the_prediction_unchanged_and_noise_moves_it() -> None:
    model = QualityModel(6, head="mlp", hidden=8, dropout=0.0, gate=True).eval()
    x, partner = torch.randn(4, 6), torch.randn(4, 6)
    with torch.no_grad():
        assert torch.allclose(model(x, noise=partner, eps=0.0), model(x))
        assert not torch.allclose(model(x, noise=partner, eps=0.3), model(x))


def test_a_head_takes_its_own_keys_and_checkpoints_that_recorded_every_key_still_load(tmp_path) -> None:
    with pytest.raises(TypeError, match="heads"):
        QualityModel(6, head="mlp", heads=4)  # the decoder's key: an error, not swallowed
    with pytest.raises(TypeError, match="depth"):
        QualityModel(6, head="decoder", tokens=3, heads=2, query="learned")  # the config fills it in, a caller gives it
    model = QualityModel(6, head="mlp", hidden=8)
    assert "heads" not in model.spec
    old = {**model.spec, "heads": 4, "depth": 1, "query": "learned"}  # what checkpoints recorded for every head
    torch.save({"spec": old, "state_dict": model.state_dict()}, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").spec == model.spec


def test_a_student_reads_the_pool_to_distil_or_as_its_memory() -> None:
    from qfm_iqm.method.memory import pool_in_memory, uses_pool

    def student(kd: float, memory: str, adv: float) -> dict:
        return {"distillation": {"kd_weight": kd}, "matching": {"memory": memory, "adv_weight": adv, "sens_weight": 0.0}}

    assert uses_pool(student(1.0, "train", 0.0)) and not pool_in_memory(student(1.0, "train", 0.0))
    assert uses_pool(student(0.0, "train_pool", 1.0)) and pool_in_memory(student(0.0, "train_pool", 1.0))
    assert not uses_pool(student(0.0, "train_pool", 0.0))  # matching off: no memory bank
    assert not uses_pool(student(0.0, "train", 1.0))


def test_sensitivity_measures_the_prediction_shift_under_matched_noise() -> None:
    from qfm_iqm.evaluation.sensitivity import sensitivity

    x, y = _toy(40)
    model = QualityModel(x.shape[-1], head="linear", dropout=0.0)
    model.fit_normaliser(torch.from_numpy(x))
    partners = np.roll(np.arange(len(x)), 1)
    zero = sensitivity(model, x, y, partners, eps=0.0, large_gap=0.2)
    assert zero["mean_abs_shift"] == 0 and zero["srcc_noisy"] == zero["srcc_clean"]
    small, large = (sensitivity(model, x, y, partners, eps=e, large_gap=0.2) for e in (0.3, 0.6))
    assert small["mean_abs_shift"] > 0 and large["mean_abs_shift"] == pytest.approx(2 * small["mean_abs_shift"], rel=1e-4)
    assert 0 <= small["nn_fraction_large_gap"] <= 1 and small["relative_shift"] > 0


def test_validation_carve_out_holds_out_whole_references() -> None:
    rows = pd.DataFrame({"image_id": [f"i{k}" for k in range(400)], "ref_id": [f"r{k // 4}" for k in range(400)]})
    held = splits.carve_out(rows, 0.2, seed=3)
    assert np.array_equal(held, splits.carve_out(rows, 0.2, seed=3))
    assert 0.1 < held.mean() < 0.3
    assert not set(rows["ref_id"][held]) & set(rows["ref_id"][~held])


def test_official_split_uses_the_datasets_own_test_part(tmp_path) -> None:
    meta = pd.DataFrame({"image_id": list("abcde"), "official_part": ["train", "val", "test", "train", "test"]})
    table = splits.official_split(meta, tmp_path / "meta.csv")
    assert table["split"].eq(0).all()
    assert splits.split_ids(table, 0, "test").tolist() == ["c", "e"]
    assert splits.split_ids(table, 0, "train").tolist() == ["a", "b", "d"]  # validation images train
    with pytest.raises(InputError, match=r"meta.csv: no official_part column"):
        splits.official_split(meta.drop(columns="official_part"), tmp_path / "meta.csv")


def test_standardisation_is_safe_for_constant_and_near_constant_channels() -> None:
    """Channels constant on the training features standardise to 0, near-constant ones get the std floor, and
    values outside the training range are clipped; the old 1e-6 clamp gave z-scores of ~1e6 here."""
    rng = np.random.default_rng(0)
    train_x = rng.normal(size=(20, 3, 6))  # images x crops x channels, channels last (pooled or token features)
    train_x[..., 0] = 0.0  # a dead unit on the training part
    train_x[..., 1] = 1e-4 * rng.normal(size=(20, 3))  # nearly constant
    model = QualityModel(6, head="linear", dropout=0.0)
    model.fit_normaliser(torch.from_numpy(train_x))
    test_x = torch.from_numpy(rng.normal(size=(5, 3, 6)) * 50).float()  # every channel active, far out of range
    z = model.standardise(test_x)
    assert torch.isfinite(z).all() and (z[..., 0] == 0).all()
    train_z = model.standardise(torch.from_numpy(train_x).float())
    assert z.abs().max() <= train_z.abs().max() + 1e-5  # no test value beyond what the head saw in training
    assert train_z[..., 1].abs().max() < 1e-2  # floored at 0.1 x the median std, not blown up to unit scale
    assert torch.isfinite(model(test_x, noise=test_x.flip(0), eps=0.3)).all()
    trained = QualityModel(6)
    trained.fit_normaliser(torch.from_numpy(train_x), frozen=False)  # fine-tune mode: features move
    z = trained.standardise(test_x)
    assert torch.isfinite(z).all() and z.abs().max() > train_z.abs().max()  # not clipped
    assert (z[..., 0] != 0).all()  # a dead unit may come alive: floored, not clipped to 0
    typical = np.median(train_x.reshape(-1, 6).std(0, ddof=1)[1:])  # the median std of the varying channels
    assert float(trained.std[0]) == pytest.approx(0.1 * typical, rel=1e-5)


def test_bf16_training_stays_within_tolerance_of_fp32() -> None:
    """``precision: bf16`` (autocast forward passes) changes the arithmetic, not the model: on the same data and
    seed, its predictions rank the images like fp32's (Spearman >= 0.995) and differ by at most 0.01 on [0, 1]
    (measured: 0.9998 and 0.0005)."""
    x, y = _toy()
    xp, _ = _toy(seed=1)
    partners = np.random.default_rng(0).integers(0, len(x), len(x))
    preds = {}
    for precision in ("fp32", "bf16"):
        cfg = train.TrainConfig(**{**CFG.__dict__, "precision": precision, "epochs": 10, "kd_weight": 1.0,
                                   "adv_weight": 1.0, "sens_weight": 0.5})
        torch.manual_seed(0)
        model = train.build_model(x.shape[-1], {"head": "mlp", "hidden": 32, "dropout": 0.1, "gate": True})
        train.train(model, x, y, cfg, x_pool=xp, y_pool=np.full(xp.shape[:2], 0.5), partners=partners)
        preds[precision] = train.predict(model, x)
    assert not np.array_equal(preds["fp32"], preds["bf16"])  # bf16 really ran
    assert evaluate.metrics(preds["fp32"], preds["bf16"])["srcc"] >= 0.995
    assert np.abs(preds["fp32"] - preds["bf16"]).max() <= 0.01
    with pytest.raises(KeyError, match="unknown precision 'fp8'"):
        train.train(QualityModel(x.shape[-1]), x, y, train.TrainConfig(**{**CFG.__dict__, "precision": "fp8"}))


def test_corrected_resampled_t_test_allows_for_overlapping_training_parts() -> None:
    d = np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    # Nadeau and Bengio: var (1/J + n_test/n_train) s^2, here (1/5 + 0.2/0.8); t = 0.03 / 0.010607 = 2.828 on 4 df
    assert evaluate.corrected_ttest(d, 0.2) == pytest.approx(0.0474, abs=5e-4)
    assert stats.ttest_1samp(d, 0).pvalue == pytest.approx(0.0132, abs=5e-4)  # the plain test: too optimistic
    # without the overlap term the corrected test and CI are the plain one-sample t-test and t interval
    assert evaluate.corrected_ttest(d, 1e-12) == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    plain = stats.t.interval(0.9, 4, loc=d.mean(), scale=stats.sem(d))
    assert evaluate.mean_ci(d, 1e-12, 0.9) == pytest.approx(plain)
    low, high = evaluate.mean_ci(d, 0.2, 0.9)
    assert low < plain[0] and high > plain[1] and (low + high) / 2 == pytest.approx(0.03)
    assert np.isnan(evaluate.corrected_ttest(d[:1], 0.2)) and evaluate.corrected_ttest(np.zeros(4), 0.2) == 1.0


def test_smallest_detectable_effect_and_too_few_splits() -> None:
    d = np.random.default_rng(0).normal(0, 0.02, 400)
    s = d.std(ddof=1)
    # many independent splits: the normal approximation (z_0.975 + z_0.8) s / sqrt(J)
    assert evaluate.detectable_effect(d, 1e-12) == pytest.approx(2.8016 * s / np.sqrt(400), rel=0.01)
    # the overlap term widens it by sqrt((1/J + 1/4) / (1/J)) at a 20% test part
    assert evaluate.detectable_effect(d, 0.2) == pytest.approx(2.8016 * s * np.sqrt(1 / 400 + 0.25), rel=0.01)
    few = d[:5]
    assert evaluate.detectable_effect(few, 0.2) > 2.8016 * few.std(ddof=1) * np.sqrt(1 / 5 + 0.25)  # t, not z
    assert evaluate.min_wilcoxon_p(5) == 0.0625 and evaluate.min_wilcoxon_p(6) == 0.03125


def test_holm_steps_down_from_the_smallest_p_value() -> None:
    p = pd.Series([0.01, 0.04, 0.03, 0.005, np.nan], index=list("abcde"))
    adjusted = evaluate.holm(p)
    # sorted 0.005 x 4, 0.01 x 3, 0.03 x 2, 0.04 x 1, each at least the one before: 0.02, 0.03, 0.06, 0.06
    assert adjusted[list("abcd")].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted["e"]) and evaluate.holm(pd.Series([0.6, 0.7])).tolist() == [1.0, 1.0]
