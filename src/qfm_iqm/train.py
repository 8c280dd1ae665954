"""Training of quality models on cached features: the teacher, and the student.

Every crop is a training sample labelled with its image's score. The student's loss is
``L = L_clean + adv_weight * L_adv + sens_weight * L_sens + kd_weight * L_kd``:

- the semantic-noise terms perturb each crop's features with ``eps`` x its mined partner's (a
  quality-matched, semantically distant image); ``L_adv`` regresses the perturbed prediction to
  the image's own score, ``L_sens = |pred(noisy) - stopgrad(pred(clean))|``;
- ``L_kd`` regresses predictions on the teacher-labelled expansion pool to the teacher's.

Training runs a fixed number of epochs and keeps the final model: no epoch is ever selected on
test data. The output is then affinely re-calibrated on the training part
(``QualityModel.calibrate``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from qfm_iqm.models import QualityModel

log = logging.getLogger(__name__)

def plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1 - Pearson correlation) / 2 over the batch: a scale-free, correlation-aligned loss."""
    p, t = pred - pred.mean(), target - target.mean()
    return (1 - (p * t).sum() / (p.norm() * t.norm()).clamp_min(1e-8)) / 2


def smooth_l1_plcc(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 regression plus the PLCC loss."""
    return F.smooth_l1_loss(pred, target) + plcc_loss(pred, target)


def l1_plcc(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 regression plus the PLCC loss."""
    return F.l1_loss(pred, target) + plcc_loss(pred, target)


LOSSES = {"smooth_l1": F.smooth_l1_loss, "l1": F.l1_loss, "mse": F.mse_loss, "smooth_l1_plcc": smooth_l1_plcc,
          "l1_plcc": l1_plcc}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    loss: str = "smooth_l1"
    kd_weight: float = 0.0
    seed: int = 0
    eps: float = 0.3
    adv_weight: float = 0.0
    sens_weight: float = 0.0


LOSS_TERMS = ["loss", "loss_clean", "loss_adv", "loss_sens", "loss_kd"]


def qfm_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cfg: TrainConfig, y: torch.Tensor,
             pred: torch.Tensor, noisy: torch.Tensor | None = None, kd_pred: torch.Tensor | None = None,
             kd_target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The student's loss terms (keys ``LOSS_TERMS``; absent terms are left out): L_clean, with
    ``noisy`` predictions L_adv and L_sens, with ``kd_pred`` L_kd, and their weighted sum ``loss``."""
    terms = {"loss_clean": loss_fn(pred, y)}
    loss = terms["loss_clean"]
    if noisy is not None:
        terms["loss_adv"] = loss_fn(noisy, y)
        terms["loss_sens"] = (noisy - pred.detach()).abs().mean()
        loss = loss + cfg.adv_weight * terms["loss_adv"] + cfg.sens_weight * terms["loss_sens"]
    if kd_pred is not None:
        terms["loss_kd"] = loss_fn(kd_pred, kd_target)
        loss = loss + cfg.kd_weight * terms["loss_kd"]
    terms["loss"] = loss
    return terms


def optimise(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
             terms: dict[str, torch.Tensor], totals: dict[str, float], steps_per_epoch: int) -> None:
    """One optimiser and scheduler step on ``terms["loss"]``; adds the terms' epoch means to ``totals``."""
    opt.zero_grad()
    terms["loss"].backward()
    opt.step()
    sched.step()
    for k, v in terms.items():
        totals[k] += v.item() / steps_per_epoch


def log_epoch(epoch: int, epochs: int, totals: dict[str, float], suffix: str = "") -> None:
    log.info("epoch %d/%d loss %.4f (clean %.4f, adv %.4f, sens %.4f, kd %.4f)%s", epoch, epochs,
             *(totals[k] for k in LOSS_TERMS), suffix)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def build_model(in_dim: int, arch: dict) -> QualityModel:
    return QualityModel(in_dim, **arch)


def _crops_as_samples(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, crops, dim) and per-image (or per-crop) targets -> (samples, dim), (samples,)."""
    n, c, d = x.shape
    y = np.broadcast_to(y[:, None] if y.ndim == 1 else y, (n, c)).copy()
    return torch.from_numpy(x.reshape(n * c, d)).float(), torch.from_numpy(y.reshape(-1)).float()


def train(model: QualityModel, x: np.ndarray, y: np.ndarray, cfg: TrainConfig,
          x_pool: np.ndarray | None = None, y_pool: np.ndarray | None = None,
          partners: np.ndarray | None = None, memory: np.ndarray | None = None) -> pd.DataFrame:
    """Fit ``model`` on (images, crops, dim) features ``x`` with image scores ``y``.

    With ``x_pool``/``y_pool`` (teacher predictions per pool crop) and ``cfg.kd_weight > 0`` each
    step adds the distillation loss on a pool batch of the same size. With ``partners`` and a
    non-zero ``adv_weight`` or ``sens_weight`` it adds the semantic-noise terms: ``partners`` holds,
    per image, the rows of its matched partners in the memory bank ``memory`` (entries, crops,
    dim; default ``x``), shape (images,) or (images, k); the noise is the mean of one random crop
    of each partner. Returns the per-epoch log.
    """
    if cfg.loss not in LOSSES:
        raise KeyError(f"unknown loss {cfg.loss!r}; known: {sorted(LOSSES)}")
    loss_fn = LOSSES[cfg.loss]
    seed_everything(cfg.seed)
    xs, ys = _crops_as_samples(x, y)
    distil = x_pool is not None and cfg.kd_weight > 0
    if distil:
        xp, yp = _crops_as_samples(x_pool, y_pool)
        model.fit_normaliser(torch.cat([xs, xp]))
    else:
        model.fit_normaliser(xs)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(xs) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    match = partners is not None and (cfg.adv_weight > 0 or cfg.sens_weight > 0)
    if match:
        bank = torch.from_numpy(x if memory is None else memory).float()
        partner_of = torch.from_numpy(np.asarray(partners).reshape(len(x), -1))
    n_crops = x.shape[1]
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    model.train()
    for epoch in range(cfg.epochs):
        totals = dict.fromkeys(LOSS_TERMS, 0.0)
        for idx in torch.randperm(len(xs), generator=gen).split(cfg.batch_size):
            pred = model(xs[idx])
            noisy = kd_pred = kd_target = None
            if match:
                rows = partner_of[idx // n_crops]
                crop = torch.randint(bank.shape[1], rows.shape, generator=gen)
                noisy = model(xs[idx], noise=bank[rows, crop].mean(1), eps=cfg.eps)
            if distil:
                pidx = torch.randint(len(xp), (len(idx),), generator=gen)
                kd_pred, kd_target = model(xp[pidx]), yp[pidx]
            terms = qfm_loss(loss_fn, cfg, ys[idx], pred, noisy, kd_pred, kd_target)
            optimise(opt, sched, terms, totals, steps_per_epoch)
        history.append({"epoch": epoch + 1, **totals})
        log_epoch(epoch + 1, cfg.epochs, totals)
    model.calibrate(xs, ys)
    return pd.DataFrame(history)


@torch.inference_mode()
def predict_crops(model: QualityModel, x: np.ndarray) -> np.ndarray:
    """(images, crops) scores."""
    model.eval()
    return model(torch.from_numpy(x).float()).numpy()


def predict(model: QualityModel, x: np.ndarray) -> np.ndarray:
    """Image scores: the mean over crops."""
    return predict_crops(model, x).mean(1)
