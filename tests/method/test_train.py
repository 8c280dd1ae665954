"""The student's losses and training loop. Each loss term is tested so that a broken implementation fails: the
noise path, shared dropout masks, the crop-to-partner mapping, L_sens's gradients (symmetric or detached) and
L_kd's targets; then training on constructed data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import toy_data

from qfm_iqm.evaluation import evaluate
from qfm_iqm.method import train
from qfm_iqm.method.checkpoint import load_model, save_model
from qfm_iqm.method.model import QualityModel

CFG = train.TrainConfig(epochs=1, lr=1e-3, weight_decay=0.0, batch_size=8, loss="smooth_l1", seed=0, noise_form="add")
MATCH = {"adv_weight": 1.0, "sens_weight": 0.5, "eps": 0.3}


class Spy(QualityModel):
    """A linear quality model that records what each call of ``forward`` received."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__(dim, head="linear", hidden=512, dropout=dropout)
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
                form: str | None = None) -> torch.Tensor:
        self.calls.append((x.detach().clone(), None if noise is None else noise.detach().clone()))
        return super().forward(x, noise, eps, form)


def _data(images: int = 12, crops: int = 3, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(images, crops, dim)).astype(np.float32), rng.uniform(size=images)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_the_noise_moves_the_noisy_prediction_and_eps_zero_leaves_it_equal(dropout: float) -> None:
    x, y = _data()
    partners = np.roll(np.arange(len(x)), 1)
    for eps, moved in [(0.3, True), (0.0, False)]:
        cfg = train.TrainConfig(**{**CFG.__dict__, **MATCH, "eps": eps})
        history = train.train(QualityModel(x.shape[-1], head="mlp", hidden=8, dropout=dropout), x, y, cfg,
                              partners=partners)
        # with eps = 0 the noisy pass repeats the clean one exactly: same input and, with dropout, same masks
        assert bool(history["loss_sens"].iloc[0] > 1e-4) is moved, (eps, dropout)


def test_each_sample_gets_noise_from_its_own_images_partner_row() -> None:
    images, crops, dim = 10, 3, 4
    x = np.zeros((images, crops, dim), np.float32)
    x[:, :, 0] = np.arange(images)[:, None]  # a sample's image, in channel 0
    x[:, :, 1] = np.arange(crops)[None, :]  # and its crop, in channel 1
    memory = np.zeros((20, crops, dim), np.float32)
    memory[:, :, 2] = np.arange(20)[:, None] + 100  # a bank entry's row, in channel 2
    partners = (np.arange(images) * 7 + 3) % 20
    model = Spy(dim)
    train.train(model, x, np.linspace(0, 1, images), train.TrainConfig(**{**CFG.__dict__, **MATCH}),
                partners=partners, memory=memory)
    noisy = [(xb, noise) for xb, noise in model.calls if noise is not None]
    assert noisy and sum(len(xb) for xb, _ in noisy) == images * crops
    for xb, noise in noisy:
        image = xb[:, 0].long()
        assert torch.equal(noise[..., 2].mean(-1).round().long() - 100, torch.from_numpy(partners)[image])


def test_a_partner_drawn_per_step_is_one_of_the_images_k_partners() -> None:
    images, crops = 8, 2
    x = np.zeros((images, crops, 3), np.float32)
    x[:, :, 0] = np.arange(images)[:, None]
    memory = np.zeros((30, crops, 3), np.float32)
    memory[:, :, 1] = np.arange(30)[:, None]
    partners = np.stack([np.arange(images), np.arange(images) + 10, np.arange(images) + 20], axis=1)
    model = Spy(3)
    cfg = train.TrainConfig(**{**CFG.__dict__, **MATCH, "epochs": 3, "partner_draw": "sample"})
    train.train(model, x, np.linspace(0, 1, images), cfg, partners=partners, memory=memory)
    drawn = {}
    for xb, noise in (c for c in model.calls if c[1] is not None):
        assert noise.shape[1] == 1  # one partner per sample
        for image, row in zip(xb[:, 0].long().tolist(), noise[:, 0, 1].long().tolist(), strict=True):
            assert row in partners[image]
            drawn.setdefault(image, set()).add(row)
    assert any(len(rows) > 1 for rows in drawn.values())


@pytest.mark.parametrize("target", ["symmetric", "detached"])
def test_l_sens_pulls_both_predictions_or_stops_the_clean_ones_gradient(target: str) -> None:
    pred = torch.tensor([0.2, 0.7], requires_grad=True)
    noisy = torch.tensor([0.5, 0.1], requires_grad=True)
    cfg = train.TrainConfig(**{**CFG.__dict__, **MATCH, "sens_target": target})
    terms = train.qfm_loss(torch.nn.functional.l1_loss, cfg, torch.tensor([0.3, 0.6]), pred, noisy)
    clean_grad, noisy_grad = torch.autograd.grad(terms["loss_sens"], [pred, noisy], allow_unused=True)
    assert noisy_grad is not None and torch.equal(noisy_grad, torch.tensor([0.5, -0.5]))
    if target == "symmetric":  # |noisy - clean| pulls the clean prediction towards the noisy one as much
        assert clean_grad is not None and torch.equal(clean_grad, -noisy_grad)
    else:
        assert clean_grad is None or not clean_grad.any()


def test_l_kd_regresses_pool_crops_to_the_teachers_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data()
    pool = np.zeros((5, 3, x.shape[-1]), np.float32)
    pool[:, :, 0] = np.arange(5)[:, None] + 50  # a pool crop's image and crop, in channels 0 and 1
    pool[:, :, 1] = np.arange(3)[None, :]
    y_pool = np.arange(15, dtype=np.float64).reshape(5, 3) / 100  # a distinct label per pool crop
    model, seen = Spy(x.shape[-1]), []
    real = train.qfm_loss

    def record(*args, **kwargs):
        seen.append((model.calls[-1][0], args[6], args[5]))  # the last forward was the pool batch
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "qfm_loss", record)
    train.train(model, x, y, train.TrainConfig(**{**CFG.__dict__, "kd_weight": 1.0}), x_pool=pool, y_pool=y_pool)
    assert seen
    for xp, target, kd_pred in seen:
        image, crop = xp[:, 0].long() - 50, xp[:, 1].long()
        assert torch.allclose(target, torch.from_numpy(y_pool[image, crop]).float())
        assert kd_pred is not None and kd_pred.shape == target.shape


TOY_CFG = train.TrainConfig(epochs=25, lr=3e-3, weight_decay=0.0, batch_size=32, loss="smooth_l1_plcc", seed=0,
                            noise_form="add")


def test_training_learns_and_is_deterministic(tmp_path) -> None:
    x, y = toy_data()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = train.build_model(x.shape[-1], {"head": "mlp", "hidden": 32, "dropout": 0.0, "gate": True, "gate_reduction": 8})
        history = train.train(model, x, y, TOY_CFG)
        runs.append(train.predict(model, x))
    assert history["loss"].iloc[-1] < 0.5 * history["loss"].iloc[0]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert evaluate.metrics(y, runs[0])["srcc"] > 0.85
    save_model(model, tmp_path / "m.pt")
    np.testing.assert_allclose(train.predict(load_model(tmp_path / "m.pt"), x), runs[1], rtol=1e-6)


def test_distillation_term_only_with_a_pool() -> None:
    x, y = toy_data()
    xp, _ = toy_data(seed=1)
    yp = np.full(xp.shape[:2], 0.5, dtype=np.float32)
    kd = train.TrainConfig(**{**TOY_CFG.__dict__, "kd_weight": 1.0, "epochs": 2})
    plain = train.train(QualityModel(x.shape[-1], head="linear", hidden=512, dropout=0.1), x, y, kd)
    distilled = train.train(QualityModel(x.shape[-1], head="linear", hidden=512, dropout=0.1), x, y, kd, x_pool=xp,
                            y_pool=yp)
    assert (plain["loss_kd"] == 0).all() and (distilled["loss_kd"] > 0).all()
    assert np.allclose(distilled["loss"], distilled["loss_clean"] + distilled["loss_kd"], atol=1e-5)


@pytest.mark.parametrize("name", sorted(train.LOSSES))
def test_every_loss_is_zero_only_for_perfect_predictions(name: str) -> None:
    y = torch.linspace(0, 1, 16)
    loss = train.LOSSES[name]
    assert loss(y, y).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(1 - y, y).item() > 0.1


def test_semantic_noise_terms_only_when_switched_on() -> None:
    x, y = toy_data()
    partners = np.roll(np.arange(len(x)), 1)
    base = {**TOY_CFG.__dict__, "epochs": 2}
    off = train.train(QualityModel(x.shape[-1], head="linear", hidden=512, dropout=0.1), x, y,
                      train.TrainConfig(**base), partners=partners)
    on_cfg = train.TrainConfig(**{**base, "adv_weight": 1.0, "sens_weight": 0.5, "eps": 0.3})
    on = train.train(QualityModel(x.shape[-1], head="linear", hidden=512, dropout=0.1), x, y, on_cfg, partners=partners)
    no_pairs = train.train(QualityModel(x.shape[-1], head="linear", hidden=512, dropout=0.1), x, y, on_cfg)
    assert (off[["loss_adv", "loss_sens"]] == 0).all().all() and (no_pairs[["loss_adv", "loss_sens"]] == 0).all().all()
    assert (on["loss_adv"] > 0).all() and (on["loss_sens"] > 0).all()
    np.testing.assert_allclose(on["loss"], on["loss_clean"] + on["loss_adv"] + 0.5 * on["loss_sens"], atol=1e-5)


def test_bf16_training_stays_within_tolerance_of_fp32() -> None:
    """``precision: bf16`` (autocast forward passes) changes the arithmetic, not the model: on the same data and
    seed, its predictions rank the images like fp32's (Spearman >= 0.995) and differ by at most 0.01 on [0, 1]
    (measured: 0.9998 and 0.0005)."""
    x, y = toy_data()
    xp, _ = toy_data(seed=1)
    partners = np.random.default_rng(0).integers(0, len(x), len(x))
    preds = {}
    for precision in ("fp32", "bf16"):
        cfg = train.TrainConfig(**{**TOY_CFG.__dict__, "precision": precision, "epochs": 10, "kd_weight": 1.0, **MATCH})
        torch.manual_seed(0)
        model = train.build_model(x.shape[-1], {"head": "mlp", "hidden": 32, "dropout": 0.1, "gate": True, "gate_reduction": 8})
        train.train(model, x, y, cfg, x_pool=xp, y_pool=np.full(xp.shape[:2], 0.5), partners=partners)
        preds[precision] = train.predict(model, x)
    assert not np.array_equal(preds["fp32"], preds["bf16"])  # bf16 really ran
    assert evaluate.metrics(preds["fp32"], preds["bf16"])["srcc"] >= 0.995
    assert np.abs(preds["fp32"] - preds["bf16"]).max() <= 0.01
    with pytest.raises(KeyError, match="unknown precision 'fp8'"):
        train.train(QualityModel(x.shape[-1], head="mlp", hidden=512, dropout=0.1), x, y,
                    train.TrainConfig(**{**TOY_CFG.__dict__, "precision": "fp8"}))


def test_crops_per_epoch_draws_that_many_crops_of_every_image() -> None:
    gen = torch.Generator().manual_seed(0)
    picks = train.epoch_samples(images=6, crops=5, per_epoch=2, gen=gen)
    assert len(picks) == 12 and sorted((picks // 5).tolist()) == sorted(list(range(6)) * 2)
    assert sorted(train.epoch_samples(6, 5, 0, gen).tolist()) == list(range(30))


def test_matching_without_its_strength_is_refused() -> None:
    with pytest.raises(ValueError, match=r"needs its strength eps \(student.matching.eps\)"):
        train.TrainConfig(**{**CFG.__dict__, "eps": None, "adv_weight": 1.0})
    assert train.TrainConfig(**{**CFG.__dict__, "eps": None}).eps is None  # matching off: no strength needed
