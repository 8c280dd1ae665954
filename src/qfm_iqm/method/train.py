"""Training of quality models on cached features: the teacher, and the student.

Every crop is a training sample labelled with its image's score. The student's loss is
``L = L_clean + adv_weight * L_adv + sens_weight * L_sens + kd_weight * L_kd``:

- the semantic-noise terms perturb each crop's features with ``eps`` x its mined partner's (a
  quality-matched, semantically distant image); ``L_adv`` regresses the perturbed prediction to
  the image's own score; ``L_sens = |pred(noisy) - pred(clean)|`` pulls the two predictions together, with
  gradients through both (``sens_target`` "symmetric") or with the clean one under stop-gradient ("detached",
  which only pushes the noisy prediction: every step moves both, so the gap barely shrinks);
- ``L_kd`` regresses predictions on the teacher-labelled expansion pool to the teacher's.

The clean and noisy passes of a step share their dropout masks, so that L_sens measures the noise
alone. Features are pooled vectors or token sequences; a model may also carry trainable backbone
layers in front of its head (``qfm_iqm.method.partial``). Training runs a fixed number of epochs and keeps
the final model: no epoch is ever selected on test data. The output is then affinely re-calibrated on the training part
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

from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.features.precision import autocast
from qfm_iqm.method.ensemble import SeedEnsemble
from qfm_iqm.method.model import QualityModel
from qfm_iqm.settings import schema_default

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
    # Optional config keys (``SCHEMA_KEYS``): None takes the schema's default
    # (``qfm_iqm.settings.schema_default``).
    noise_form: str | None = None  # "add": z + eps z_partner (the paper); "mix": the convex, label-preserving mix
    sens_target: str | None = None  # L_sens against pred(clean): "symmetric" (gradients through both) or "detached"
    partner_draw: str | None = None  # with several partners per image: "mean" of them, or "sample" one per step
    crops_per_epoch: int | None = None  # random crops per image and epoch; 0: every crop
    precision: str | None = None  # "bf16": forward passes under bfloat16 autocast (weights and optimiser stay fp32)

    def __post_init__(self) -> None:
        for name, key in SCHEMA_KEYS.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, schema_default(key))


SCHEMA_KEYS = {"noise_form": "student.matching.noise_form", "sens_target": "student.matching.sens_target",
               "partner_draw": "student.matching.partner_draw", "crops_per_epoch": "student.train.crops_per_epoch",
               "precision": "student.train.precision"}  # TrainConfig field -> its config key


LOSS_TERMS = ["loss", "loss_clean", "loss_adv", "loss_sens", "loss_kd"]
SENS_TARGETS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "symmetric": lambda pred: pred,  # L_sens's gradient reaches the clean prediction too
    "detached": torch.Tensor.detach,  # stop-gradient on the clean prediction
}


def qfm_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cfg: TrainConfig, y: torch.Tensor,
             pred: torch.Tensor, noisy: torch.Tensor | None = None, kd_pred: torch.Tensor | None = None,
             kd_target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The student's loss terms (keys ``LOSS_TERMS``; absent terms are left out): L_clean, with
    ``noisy`` predictions L_adv and L_sens, with ``kd_pred`` L_kd, and their weighted sum ``loss``."""
    terms = {"loss_clean": loss_fn(pred, y)}
    loss = terms["loss_clean"]
    if noisy is not None:
        terms["loss_adv"] = loss_fn(noisy, y)
        terms["loss_sens"] = (noisy - SENS_TARGETS[cfg.sens_target](pred)).abs().mean()
        loss = loss + cfg.adv_weight * terms["loss_adv"] + cfg.sens_weight * terms["loss_sens"]
    if kd_pred is not None:
        terms["loss_kd"] = loss_fn(kd_pred, kd_target)
        loss = loss + cfg.kd_weight * terms["loss_kd"]
    terms["loss"] = loss
    return terms


def optimise(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
             terms: dict[str, torch.Tensor], totals: dict[str, torch.Tensor], steps_per_epoch: int,
             clip: float | None = None, scaler: torch.amp.GradScaler | None = None) -> None:
    """One optimiser and scheduler step on ``terms["loss"]``: through the loss ``scaler`` (float16), with the gradients'
    total norm clipped to ``clip`` (None: not clipped; measured after unscaling). Adds the terms' epoch means to
    ``totals``, and with ``clip`` the largest norm before clipping (``grad_norm_max``), as tensors: reading them
    (``epoch_means``) once an epoch spares a device sync per term and step."""
    opt.zero_grad()
    if scaler is None:
        terms["loss"].backward()
    else:
        scaler.scale(terms["loss"]).backward()
        scaler.unscale_(opt)
    if clip is not None:
        params = [p for group in opt.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, clip).detach().double().cpu()
        totals["grad_norm_max"] = torch.maximum(totals.get("grad_norm_max", norm), norm)
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    sched.step()
    for k, v in terms.items():
        totals[k] = totals[k] + v.detach().double() / steps_per_epoch


def new_totals() -> dict[str, torch.Tensor]:
    return {k: torch.zeros((), dtype=torch.float64) for k in LOSS_TERMS}


def epoch_means(totals: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in totals.items()}


def log_epoch(epoch: int, epochs: int, totals: dict[str, float], suffix: str = "") -> None:
    log.info("epoch %d/%d loss %.4f (clean %.4f, adv %.4f, sens %.4f, kd %.4f)%s", epoch, epochs,
             *(totals[k] for k in LOSS_TERMS), suffix)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def build_model(in_dim: int, arch: dict) -> QualityModel:
    return QualityModel(in_dim, **arch)


def one_cycle(groups: list[dict], total_steps: int) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.OneCycleLR]:
    """AdamW over parameter ``groups`` (each with its ``lr`` and ``weight_decay``) and a one-cycle schedule
    that peaks at each group's ``lr``."""
    opt = torch.optim.AdamW(groups)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=total_steps)


def step_lr(step: int, base: float, warmup: int, warmup_lr: float, decay: int, rate: float, floor: float) -> float:
    """The learning rate of step ``step`` (from 0) under a linear warm-up from ``warmup_lr`` to ``base`` over ``warmup``
    steps, then ``base`` x ``rate`` every ``decay`` steps counted from the warm-up's end, never below ``floor``: timm's
    StepLRScheduler per update (``warmup_prefix``), as DEIQT schedules its training."""
    if step < warmup:
        return warmup_lr + step * (base - warmup_lr) / warmup
    return max(floor, base * rate ** ((step - warmup) // decay))


def warmup_step(groups: list[dict], steps_per_epoch: int, warmup_epochs: int, warmup_lr: float, decay_epochs: int,
                decay_rate: float, min_lr: float) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over parameter ``groups`` (each with its ``lr`` and ``weight_decay``), each group's rate on ``step_lr``
    with its ``lr`` as the base and the warm-up and decay periods in epochs of ``steps_per_epoch`` steps."""
    opt = torch.optim.AdamW(groups)

    def factor(base: float) -> Callable[[int], float]:
        return lambda step: step_lr(step, base, warmup_epochs * steps_per_epoch, warmup_lr,
                                    decay_epochs * steps_per_epoch, decay_rate, min_lr) / base if base > 0 else 0.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, [factor(g["lr"]) for g in groups])


def clean_and_noisy(model: torch.nn.Module, x: torch.Tensor, noise: torch.Tensor, eps: float,
                    form: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions without and with the semantic noise (partner inputs ``noise``, encoded without
    gradient), from one encoding of ``x`` and under the same dropout masks: the random state is
    rewound between the two passes."""
    feats = model.encode(x)
    with torch.no_grad():
        noise = model.encode(noise)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        pred = model.score(feats)
    return pred, model.score(feats, noise, eps, form)


def partner_rows(partner_of: torch.Tensor, images: torch.Tensor, draw: str, gen: torch.Generator) -> torch.Tensor:
    """The memory-bank rows of each sample's partners, (samples, k): all k (``draw`` "mean"), or one of
    them drawn per sample (``"sample"``, (samples, 1))."""
    rows = partner_of[images]
    if draw == "mean":
        return rows
    if draw != "sample":
        raise KeyError(f"unknown partner draw {draw!r}; known: ['mean', 'sample']")
    return rows.gather(1, torch.randint(rows.shape[1], (len(rows), 1), generator=gen))


def epoch_samples(images: int, crops: int, per_epoch: int, gen: torch.Generator) -> torch.Tensor:
    """Shuffled sample indices (image x crops + crop) of one epoch: every crop, or ``per_epoch``
    random crops of every image."""
    if per_epoch <= 0:
        return torch.randperm(images * crops, generator=gen)
    picks = torch.arange(images).repeat(per_epoch) * crops + torch.randint(crops, (images * per_epoch,), generator=gen)
    return picks[torch.randperm(len(picks), generator=gen)]


def _crops_as_samples(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, crops, *feature) and per-image (or per-crop) targets -> (samples, *feature), (samples,)."""
    n, c = x.shape[:2]
    y = np.broadcast_to(y[:, None] if y.ndim == 1 else y, (n, c)).copy()
    return torch.from_numpy(x.reshape(n * c, *x.shape[2:])).float(), torch.from_numpy(y.reshape(-1)).float()


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig,
          x_pool: np.ndarray | None = None, y_pool: np.ndarray | None = None,
          partners: np.ndarray | None = None, memory: np.ndarray | None = None) -> pd.DataFrame:
    """Fit ``model`` on (images, crops, dim) features ``x`` with image scores ``y``.

    With ``x_pool``/``y_pool`` (teacher predictions per pool crop) and ``cfg.kd_weight > 0`` each
    step adds the distillation loss on a pool batch of the same size. With ``partners`` and a
    non-zero ``adv_weight`` or ``sens_weight`` it adds the semantic-noise terms: ``partners`` holds,
    per image, the rows of its matched partners in the memory bank ``memory`` (entries, crops,
    *feature; default ``x``), shape (images,) or (images, k); the noise is one random crop of each
    partner (``cfg.partner_draw``: all k, averaged, or one drawn per step). Returns the per-epoch log.
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
    n_crops = x.shape[1]
    steps_per_epoch = -(-(len(x) * cfg.crops_per_epoch if cfg.crops_per_epoch > 0 else len(xs)) // cfg.batch_size)
    opt, sched = one_cycle(model.param_groups(cfg.lr, cfg.weight_decay), cfg.epochs * steps_per_epoch)
    match = partners is not None and (cfg.adv_weight > 0 or cfg.sens_weight > 0)
    if match:
        bank = torch.from_numpy(x if memory is None else memory).float()
        partner_of = torch.from_numpy(np.asarray(partners).reshape(len(x), -1))
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    model.train()
    device = next(model.parameters()).device
    for epoch in range(cfg.epochs):
        totals = new_totals()
        for idx in epoch_samples(len(x), n_crops, cfg.crops_per_epoch, gen).split(cfg.batch_size):
            noisy = kd_pred = kd_target = None
            with autocast(device, cfg.precision):
                if match:
                    rows = partner_rows(partner_of, idx // n_crops, cfg.partner_draw, gen)
                    crop = torch.randint(bank.shape[1], rows.shape, generator=gen)
                    pred, noisy = clean_and_noisy(model, xs[idx], bank[rows, crop], cfg.eps, cfg.noise_form)
                else:
                    pred = model(xs[idx])
                if distil:
                    pidx = torch.randint(len(xp), (len(idx),), generator=gen)
                    kd_pred, kd_target = model(xp[pidx]), yp[pidx]
            terms = qfm_loss(loss_fn, cfg, ys[idx], *as_float(pred, noisy, kd_pred), kd_target)
            optimise(opt, sched, terms, totals, steps_per_epoch)
        means = epoch_means(totals)
        history.append({"epoch": epoch + 1, **means})
        log_epoch(epoch + 1, cfg.epochs, means)
    model.calibrate(xs, ys)
    return pd.DataFrame(history)


def fit(arch: dict, feats: FeatureSet, y: np.ndarray, cfg: dict, model_args: dict | None = None,
        **extra: np.ndarray) -> tuple[torch.nn.Module, pd.DataFrame]:
    """A fresh, seeded model of ``arch`` (``qfm_iqm.method.partial.model_for`` with ``model_args``: backbone,
    weights, partial) trained on the cache ``feats`` and scores ``y`` under the ``TrainConfig`` fields ``cfg``,
    with ``train``'s inputs ``extra``. Returns the model and its per-epoch log."""
    from qfm_iqm.method.partial import model_for  # imports timm: only the jobs that build a model pay for it

    seed_everything(cfg["seed"])
    model = model_for(arch, feats, **(model_args or {}))
    return model, train(model, feats.features, y, TrainConfig(**cfg), **extra)


def fit_seeds(arch: dict, feats: FeatureSet, y: np.ndarray, cfg: dict, model_args: dict | None = None, seeds: int = 1,
              **extra: np.ndarray) -> tuple[torch.nn.Module, pd.DataFrame]:
    """``fit`` with ``seeds`` seeds (``cfg``'s seed and the next ``seeds - 1``): one model, or with ``seeds`` > 1 a
    ``SeedEnsemble`` of them (``qfm_iqm.method.ensemble``), and the per-epoch logs (a ``seed`` column)."""
    if seeds == 1:
        return fit(arch, feats, y, cfg, model_args, **extra)
    runs = [fit(arch, feats, y, {**cfg, "seed": cfg["seed"] + k}, model_args, **extra) for k in range(seeds)]
    logs = pd.concat([log.assign(seed=cfg["seed"] + k) for k, (_, log) in enumerate(runs)], ignore_index=True)
    return SeedEnsemble([model for model, _ in runs]), logs


def as_float(*preds: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Predictions in fp32 for the loss (autocast may have made them bf16); absent ones stay None."""
    return tuple(None if p is None else p.float() for p in preds)


@torch.inference_mode()
def predict_crops(model: torch.nn.Module, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(images, crops) scores, ``batch_size`` images at a time."""
    model.eval()
    device = next(model.parameters()).device
    return np.concatenate([model(torch.from_numpy(x[i: i + batch_size]).float().to(device)).cpu().numpy()
                           for i in range(0, max(len(x), 1), batch_size)])


def predict(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Image scores: the mean over crops."""
    return predict_crops(model, x).mean(1)
