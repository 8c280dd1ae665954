"""The student's loss terms, each tested so that a broken implementation fails: the noise path, shared
dropout masks, the crop-to-partner mapping, L_sens's gradients (symmetric or detached) and L_kd's targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO

from qfm_iqm.method import train
from qfm_iqm.method.model import QualityModel

CFG = train.TrainConfig(epochs=1, lr=1e-3, weight_decay=0.0, batch_size=8, loss="smooth_l1", seed=0, noise_form="add")
MATCH = {"adv_weight": 1.0, "sens_weight": 0.5}


class Spy(QualityModel):
    """A linear quality model that records what each call of ``forward`` received."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__(dim, head="linear", dropout=dropout)
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
                form: str = "add") -> torch.Tensor:
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


def test_the_nuisance_reliance_measure_sees_a_model_that_reads_the_nuisance_block() -> None:
    from qfm_iqm.method.diagnostics import farthest_matched, nuisance_reliance, nuisance_tokens

    x, y, content = nuisance_tokens(0, images=200)
    partners = farthest_matched(y, content)
    assert np.all(np.abs(y[partners] - y) < 0.05) and np.all(partners != np.arange(len(y)))
    blind = x.copy()
    blind[..., x.shape[-1] // 2:] = 0  # a model that never saw the nuisance block cannot rely on it
    cfg = train.TrainConfig(epochs=20, lr=3e-3, weight_decay=0.0, batch_size=32, loss="smooth_l1", seed=0)
    reliance = {}
    for name, data in [("reads", x), ("blind", blind)]:
        model = QualityModel(x.shape[-1], head="mlp", hidden=16, dropout=0.0)
        train.train(model, data.mean(2), y, cfg)
        reliance[name] = nuisance_reliance(model, nuisance_tokens(1, images=200, test=True)[0].mean(2), 8)
    assert reliance["reads"] > 0.1 and reliance["blind"] < 0.3 * reliance["reads"], reliance


@pytest.mark.slow  # trains 20 small models per head
@pytest.mark.parametrize("head", ["mlp", "decoder"])
def test_the_default_matching_lowers_the_reliance_on_a_confounder_without_costing_accuracy(head: str) -> None:
    """Claim 3 on synthetic tokens whose content correlates with quality on the training images only: with the
    configured matching settings (config/config.yaml) and the bench's smooth-L1 quality loss, matching lowers the
    reliance on content on at least 8 of 10 draws and does not lower the median test SRCC. (With the pipeline's
    smooth-L1 + PLCC loss the effect is much weaker; docs/results.md "The corrected loss" gives the numbers, and
    the claims table tests the run's own loss.)"""
    from qfm_iqm.method.diagnostics import nuisance_experiment
    from qfm_iqm.pipeline.config import load_config_file

    matching = load_config_file(REPO / "config/config.yaml")["student"]["matching"]
    runs = [nuisance_experiment(seed, head, matching, regime="confounded") for seed in range(10)]
    ratios = [r["matching"]["reliance"] / r["baseline"]["reliance"] for r in runs]
    gains = [r["matching"]["srcc"] - r["baseline"]["srcc"] for r in runs]
    assert sum(r < 1 for r in ratios) >= 8 and np.median(gains) >= 0, (ratios, gains)
