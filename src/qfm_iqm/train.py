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
          partners: np.ndarray | None = None) -> pd.DataFrame:
    """Fit ``model`` on (images, crops, dim) features ``x`` with image scores ``y``.

    With ``x_pool``/``y_pool`` (teacher predictions per pool crop) and ``cfg.kd_weight > 0`` each
    step adds the distillation loss on a pool batch of the same size. With ``partners`` (for each
    image, the row of its matched partner in ``x``) and a non-zero ``adv_weight`` or
    ``sens_weight`` it adds the semantic-noise terms. Returns the per-epoch log.
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
    n_crops = x.shape[1]
    partner_of = torch.from_numpy(np.asarray(partners)) if match else None
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    model.train()
    for epoch in range(cfg.epochs):
        totals = {"loss": 0.0, "loss_clean": 0.0, "loss_adv": 0.0, "loss_sens": 0.0, "loss_kd": 0.0}
        for idx in torch.randperm(len(xs), generator=gen).split(cfg.batch_size):
            pred = model(xs[idx])
            clean = loss_fn(pred, ys[idx])
            loss = clean
            if match:
                crop = torch.randint(n_crops, (len(idx),), generator=gen)
                noisy = model(xs[idx], noise=xs[partner_of[idx // n_crops] * n_crops + crop], eps=cfg.eps)
                adv = loss_fn(noisy, ys[idx])
                sens = (noisy - pred.detach()).abs().mean()
                loss = loss + cfg.adv_weight * adv + cfg.sens_weight * sens
                totals["loss_adv"] += adv.item() / steps_per_epoch
                totals["loss_sens"] += sens.item() / steps_per_epoch
            if distil:
                pidx = torch.randint(len(xp), (len(idx),), generator=gen)
                kd = loss_fn(model(xp[pidx]), yp[pidx])
                loss = loss + cfg.kd_weight * kd
                totals["loss_kd"] += kd.item() / steps_per_epoch
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            totals["loss"] += loss.item() / steps_per_epoch
            totals["loss_clean"] += clean.item() / steps_per_epoch
        history.append({"epoch": epoch + 1, **totals})
        log.info("epoch %d/%d loss %.4f (clean %.4f, adv %.4f, sens %.4f, kd %.4f)", epoch + 1, cfg.epochs,
                 totals["loss"], totals["loss_clean"], totals["loss_adv"], totals["loss_sens"], totals["loss_kd"])
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
