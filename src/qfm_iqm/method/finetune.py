"""Fine-tune mode: the backbone is unfrozen and features are computed inside training.

The loss is the frozen-feature student's (``qfm_iqm.method.train.train``):
``L = L_clean + adv_weight * L_adv + sens_weight * L_sens + kd_weight * L_kd``, but every step
decodes images, takes a random crop (and horizontal flip) of each and back-propagates into the
backbone. A decoder reads the tokens of the backbone's top (a ViT's, the class token first, or a CNN's;
``qfm_iqm.method.partial.cut``) and the backbone below ``partial.from_block`` stays frozen (0: a ViT trains
whole). Partner features (the semantic noise) are computed without gradient, as if read from
the memory bank. BatchNorm running statistics stay frozen by default: small batches would
corrupt them. Feature standardisation has a floor on the std (``std_floor``) and no clipping. The
final model is kept and its output affinely calibrated on centre crops of the training images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from qfm_iqm.features.backbone import MultiScaleDescriptor, create_backbone, data_config
from qfm_iqm.features.extract import CropRecipe
from qfm_iqm.features.loader import DataWait
from qfm_iqm.features.precision import autocast, grad_scaler
from qfm_iqm.features.weights import load_strict
from qfm_iqm.io import atomic_path, read_rgb, reading
from qfm_iqm.method.memory import pool_bank_ids
from qfm_iqm.method.model import QualityModel
from qfm_iqm.method.partial import PartialSpec, from_spec, is_vit, partial_spec, with_top
from qfm_iqm.method.train import (
    LOSSES,
    TrainConfig,
    as_float,
    clean_and_noisy,
    epoch_means,
    log_epoch,
    new_totals,
    one_cycle,
    optimise,
    partner_rows,
    qfm_loss,
    seed_everything,
    warmup_step,
)
from qfm_iqm.settings import WARMUP_STEP_KEYS, finetune_training, loss_settings, schema_default

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig(TrainConfig):
    """The student's ``TrainConfig`` (``lr`` is the head's rate, ``batch_size`` counts images, ``crops_per_epoch``
    at least 1: every crop is drawn at random) plus the settings of training through the backbone: those of the
    config's ``finetune`` section, the crop size and, for a decoder, ``partial.from_block``."""

    lr_backbone: float
    crop: int
    device: str  # "cpu", "cuda", or "auto" (cuda when available)
    channels_last: bool
    freeze_bn_stats: bool
    std_floor: float  # minimum feature std for standardisation, relative to the median std
    from_block: int | None = None  # decoder heads: the first trained block of the backbone (None: pooled heads)
    # The recipe's keys (``RECIPE_KEYS``): None takes the schema's default of ``finetune.<name>``.
    schedule: str | None = None  # "onecycle", or "warmup_step" (``qfm_iqm.method.train.step_lr``: the warm-up fields)
    warmup_epochs: int | None = None  # warmup_step: a warm-up from warmup_lr to each group's lr over warmup_epochs,
    warmup_lr: float | None = None
    decay_epochs: int | None = None  # then x decay_rate every decay_epochs, never below min_lr
    decay_rate: float | None = None
    min_lr: float | None = None
    clip_grad_norm: float | None = None  # the gradients' total norm is clipped to this (None: not clipped)
    decay_exemptions: bool | None = None  # no weight decay on 1-D parameters, embeddings, tokens, queries
    head_init: str | None = None  # "torch", or "trunc_normal": the decoder's Linear layers as DEIQT initialises them
    test_crops: int | None = None  # crops averaged per test image (None: the config's crops.n)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in RECIPE_KEYS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, schema_default(f"finetune.{name}"))


RECIPE_KEYS = ("schedule", *WARMUP_STEP_KEYS, "clip_grad_norm", "decay_exemptions", "head_init", "test_crops")


def student_config(student: dict, finetune: dict, crop: int, partial: PartialSpec | None = None) -> FinetuneConfig:
    """The fine-tune settings of a student config: its loss settings (``qfm_iqm.settings.loss_settings``),
    then the config's ``finetune`` section (``lr_head`` is ``lr``; its ``epochs``, ``weight_decay``, ``batch_size``
    and ``crops_per_epoch`` replace the student's), ``partial.from_block`` (decoders) and the crop size."""
    own = {"lr" if k == "lr_head" else k: v for k, v in finetune_training(finetune).items()}
    from_block = {"from_block": partial.from_block} if partial else {}
    return FinetuneConfig(**{**loss_settings(student), **own, **from_block}, crop=crop)


def bank_images(train: pd.DataFrame, pool_meta: pd.DataFrame | None, labels: pd.DataFrame | None,
                bank_ids: np.ndarray, kd_weight: float) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """``finetune``'s ``pool`` and ``memory`` from the training images ``train`` (image_id, path), the pool's
    ``pool_meta`` and teacher ``labels`` (``qfm_iqm.method.memory.pool_labels``; None without a pool): the pool
    images with their teacher scores when ``kd_weight`` > 0, and the images of the memory bank ``bank_ids``."""
    if labels is None:
        return None, None
    pool = pool_meta.merge(labels[["image_id", "teacher_score"]], on="image_id")
    memory = pd.concat([train[["image_id", "path"]], pool[["image_id", "path"]].assign(
        image_id=pool_bank_ids(pool["image_id"]))], ignore_index=True).set_index("image_id").loc[bank_ids]
    return pool if kd_weight > 0 else None, memory.reset_index()


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; other names pass through."""
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


class FinetuneModel(nn.Module):
    """Backbone descriptor -> quality model, on RGB images in [0, 1] (B, 3, H, W): the multi-scale pooled
    descriptor and a ``QualityModel``, or, for a decoder, the backbone's bottom and a
    ``qfm_iqm.method.partial.PartialModel`` (its top, tokens and decoder) trained together. ``pixels``: timm's
    preprocessing config (mean, std)."""

    def __init__(self, descriptor: nn.Module, quality: nn.Module, pixels: dict) -> None:
        super().__init__()
        self.descriptor = descriptor
        self.quality = quality
        self.register_buffer("pixel_mean", torch.tensor(pixels["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixels["std"]).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.descriptor((images - self.pixel_mean) / self.pixel_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Scores of ``images`` (training adds the partners' semantic noise on ``quality`` itself: ``finetune``)."""
        return self.quality(self.features(images))


def build_model(net: nn.Module, name: str, arch: dict, crop: int, from_block: int | None,
                top_lr_scale: float) -> FinetuneModel:
    """A fine-tune model over the timm backbone ``net`` (named ``name``): pooled heads read its multi-scale
    descriptor; a decoder reads the tokens of its top from block ``from_block`` (``qfm_iqm.method.partial.cut``: a
    CNN's, or a ViT's with its class token first), which trains at ``top_lr_scale`` x the head's learning rate."""
    pixels = data_config(net)
    if arch["head"] != "decoder":
        descriptor = MultiScaleDescriptor(net)
        return FinetuneModel(descriptor, QualityModel(sum(descriptor.block_sizes), **arch), pixels)
    if from_block is None:
        raise ValueError("head 'decoder' trains the backbone's top from a block: give from_block (partial.from_block)")
    partial = PartialSpec(from_block, top_lr_scale)
    bottom, top = partial.cut(net)
    with torch.no_grad():
        size = bottom.eval()(torch.zeros(1, 3, crop, crop)).shape[1] - bottom.early_size
    return FinetuneModel(bottom, with_top(top, name, partial, arch, size, bottom.early_size), pixels)


def epoch_steps(images: int, cfg: FinetuneConfig) -> int:
    """Optimiser steps per epoch on ``images`` training images: ``crops_per_epoch`` random crops of each, in batches of
    ``batch_size`` (the last one smaller)."""
    return -(-images * cfg.crops_per_epoch // cfg.batch_size)


def recipe_text(cfg: FinetuneConfig, images: dict[str, int | None]) -> str:
    """How a fine-tuned model trains, for the dry run: epochs, steps per epoch on each dataset's ``images`` training
    images (None: not known before the data are prepared), the learning-rate schedule, precision, clipping and the
    test crops."""
    steps = ", ".join(f"{name} {epoch_steps(n, cfg)} ({n})" if n else f"{name} ? (known once prepared)"
                      for name, n in images.items())
    lr = (f"one-cycle to {cfg.lr:g} (backbone {cfg.lr_backbone:g})" if cfg.schedule == "onecycle" else
          f"warm-up from {cfg.warmup_lr:g} to {cfg.lr:g} (backbone {cfg.lr_backbone:g}) over {cfg.warmup_epochs} "
          f"epochs, then x{cfg.decay_rate:g} every {cfg.decay_epochs} epochs (floor {cfg.min_lr:g})")
    precision = {"amp": "amp (float16 with a grad scaler on CUDA, bfloat16 elsewhere)"}.get(cfg.precision,
                                                                                          cfg.precision)
    clip = f"clipped at norm {cfg.clip_grad_norm:g}" if cfg.clip_grad_norm else "not clipped"
    exempt = " (none on biases, norms, embeddings, tokens, queries)" if cfg.decay_exemptions else ""
    return (f"{cfg.epochs} epochs; steps per epoch (training images x {cfg.crops_per_epoch} crops / {cfg.batch_size}): "
            f"{steps}\n"
            f"lr: {lr}; AdamW, weight decay {cfg.weight_decay:g}{exempt}; loss {cfg.loss}; precision {precision}; "
            f"gradients {clip}; test crops: {cfg.test_crops or 'crops.n'}")


def gpu_memory_estimate(name: str, crop: int, images: int, precision: str) -> float | None:
    """The expected peak GPU memory (GiB) of a fine-tune step of the timm ViT ``name`` with gradients through
    ``images`` crops of ``crop`` pixels (the batch, and as many pool images with distillation): weights, gradients and
    AdamW's two moments in fp32, the activations every block keeps for the backward pass (Korthikanti et al. 2022:
    tokens x width x (34 + 5 x heads x tokens / width) bytes at 16 bits, twice that in fp32) and 0.5 GiB of CUDA
    context; an upper bound when blocks below ``partial.from_block`` stay frozen. An estimate, not a measurement
    (``bench/gpu_paper_step.py`` measures it); None for other backbones."""
    import timm

    with torch.device("meta"):
        net = timm.create_model(name, pretrained=False)
    if not is_vit(net):
        return None
    tokens = (crop // net.patch_embed.patch_size[0]) * (crop // net.patch_embed.patch_size[1]) + net.num_prefix_tokens
    width, heads = net.embed_dim, net.blocks[0].attn.num_heads
    per_block = tokens * width * (34 + 5 * heads * tokens / width) * (1 if precision in ("bf16", "amp") else 2)
    state = 16 * sum(p.numel() for p in net.parameters())
    return (images * len(net.blocks) * per_block + state) / 2**30 + 0.5


EXEMPT_NAMES = ("pos_embed", "cls_token", "reg_token", "position", "query")  # embeddings, tokens and queries


def decay_exempt(name: str, param: nn.Parameter) -> bool:
    """Whether DEIQT's optimiser leaves the parameter ``name`` without weight decay: biases, every 1-D parameter (norm
    weights, layer scales), position embeddings, class (and register) tokens, and, here too, the decoder's queries."""
    return param.ndim <= 1 or name.endswith(".bias") or name.rsplit(".", 1)[-1] in EXEMPT_NAMES


def exempt_from_decay(model: nn.Module, groups: list[dict]) -> list[dict]:
    """``groups`` of ``model``'s parameters, each split in two: its ``decay_exempt`` parameters without weight decay,
    the rest as they were (empty groups left out)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for group in groups:
        exempt = [decay_exempt(names[id(p)], p) for p in group["params"]]
        kept = [p for p, e in zip(group["params"], exempt, strict=True) if not e]
        spared = [p for p, e in zip(group["params"], exempt, strict=True) if e]
        out += [{**group, "params": kept}, {**group, "params": spared, "weight_decay": 0.0}]
    return [g for g in out if g["params"]]


def init_decoder(model: nn.Module) -> None:
    """DEIQT's initialisation of its decoder: every Linear layer of ``model``'s decoder heads trunc_normal (std 0.02),
    bias 0. ValueError when ``model`` has no decoder."""
    from qfm_iqm.method.heads import DecoderHead

    decoders = [m for m in model.modules() if isinstance(m, DecoderHead)]
    if not decoders:
        raise ValueError("finetune.head_init 'trunc_normal' initialises a decoder head's Linear layers, and this model "
                         "has no decoder (arch.head)")
    for layer in (m for d in decoders for m in d.modules() if isinstance(m, nn.Linear)):
        nn.init.trunc_normal_(layer.weight, std=0.02)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def parameter_groups(model: FinetuneModel, cfg: FinetuneConfig) -> list[dict]:
    """The optimiser's parameter groups: the backbone's at ``lr_backbone`` (none when a decoder trains its top from a
    later block, ``from_block``: the backbone below stays frozen), then the quality model's
    (``QualityModel.param_groups``), with ``decay_exemptions`` split into those with and without weight decay."""
    frozen = bool(cfg.from_block)
    model.descriptor.requires_grad_(not frozen)
    bottom = [] if frozen else [{"params": list(model.descriptor.parameters()), "lr": cfg.lr_backbone,
                                 "weight_decay": cfg.weight_decay}]
    groups = [*bottom, *model.quality.param_groups(cfg.lr, cfg.weight_decay)]
    return exempt_from_decay(model, groups) if cfg.decay_exemptions else groups


def optimiser(cfg: FinetuneConfig, groups: list[dict], steps_per_epoch: int
              ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over ``groups`` under ``cfg.schedule``: one-cycle over the whole run, or DEIQT's warm-up and steps."""
    if cfg.schedule == "onecycle":
        return one_cycle(groups, cfg.epochs * steps_per_epoch)
    if cfg.schedule != "warmup_step":
        raise KeyError(f"unknown schedule {cfg.schedule!r}; known: ['onecycle', 'warmup_step']")
    return warmup_step(groups, steps_per_epoch, cfg.warmup_epochs, cfg.warmup_lr, cfg.decay_epochs, cfg.decay_rate,
                       cfg.min_lr)


def _to_tensor(crops: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


def _collect(futures: list[Future], device: torch.device, fmt: torch.memory_format) -> torch.Tensor:
    """The decoded crops of ``futures`` as one batch on ``device``."""
    return _to_tensor([f.result() for f in futures]).to(device, memory_format=fmt)


def _random_crop(path: str, size: int, u: float, v: float, flip: bool) -> np.ndarray:
    """The crop at relative position (u, v) in [0, 1); short sides below ``size`` are upscaled as in CropRecipe."""
    img = read_rgb(path)
    if min(img.size) < size:
        scale = size / min(img.size)
        img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                         Image.Resampling.BICUBIC)
    left, top = int(u * (img.width - size + 1)), int(v * (img.height - size + 1))
    crop = img.crop((left, top, left + size, top + size))
    return np.asarray(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else crop)


def over_crops(fn: Callable[[torch.Tensor], torch.Tensor], meta: pd.DataFrame, recipe: CropRecipe,
                batch_size: int, device: torch.device | str) -> torch.Tensor:
    """``fn`` applied to every recipe crop of ``meta``'s images, concatenated (images x crops first)."""
    out, per_batch = [], max(1, batch_size // recipe.n)
    for start in range(0, len(meta), per_batch):
        rows = meta.iloc[start: start + per_batch]
        crops = [np.asarray(c) for p, i in zip(rows["path"], rows["image_id"], strict=True)
                 for c in recipe.crops(read_rgb(p), str(i))]
        out.append(fn(_to_tensor(crops).to(device)))
    return torch.cat(out)


def _train_mode(model: FinetuneModel, freeze_bn_stats: bool) -> None:
    model.train()
    if freeze_bn_stats:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def finetune(backbone: str, weights: str | Path, arch: dict, cfg: FinetuneConfig, train: pd.DataFrame,
             partners: np.ndarray | None = None,
             pool: pd.DataFrame | None = None,
             memory: pd.DataFrame | None = None) -> tuple[FinetuneModel, pd.DataFrame]:
    """Train backbone + quality model end to end on ``train`` (image_id, path, score).

    ``partners``: per train row, the rows of its matched partners in the memory bank ``memory``
    (image_id, path; default ``train``), shape (images,) or (images, k); with a non-zero
    ``adv_weight`` or ``sens_weight`` the semantic noise is the descriptor of one random crop of each
    partner (all k averaged, or one drawn per step: ``cfg.partner_draw``). ``pool`` (image_id, path,
    teacher_score): distillation on a same-size pool batch per step when ``kd_weight`` > 0. Returns
    the model (eval mode) and the per-epoch log.
    """
    if cfg.loss not in LOSSES:
        raise KeyError(f"unknown loss {cfg.loss!r}; known: {sorted(LOSSES)}")
    if cfg.crops_per_epoch < 1:
        raise ValueError(f"crops_per_epoch: fine-tuning draws its crops at random, at least 1 per image and epoch "
                         f"(got {cfg.crops_per_epoch})")
    loss_fn = LOSSES[cfg.loss]
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = build_model(create_backbone(backbone, weights), backbone, arch, cfg.crop, cfg.from_block,
                        cfg.lr_backbone / cfg.lr)
    if cfg.head_init == "trunc_normal":
        init_decoder(model)
    model = model.to(device, memory_format=fmt)
    centre = CropRecipe(1, cfg.crop)
    y = torch.tensor(train["score"].to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        model.eval()
        model.quality.fit_normaliser(over_crops(model.features, train, centre, cfg.batch_size, device), cfg.std_floor,
                                     frozen=False)
    samples = len(train) * cfg.crops_per_epoch
    steps_per_epoch = epoch_steps(len(train), cfg)
    opt, sched = optimiser(cfg, parameter_groups(model, cfg), steps_per_epoch)
    scaler = grad_scaler(device, cfg.precision)
    match = partners is not None and (cfg.adv_weight > 0 or cfg.sens_weight > 0)
    distil = pool is not None and cfg.kd_weight > 0
    partner_of = torch.as_tensor(np.asarray(partners).reshape(len(train), -1)) if match else None
    paths = train["path"].astype(str).tolist()
    bank_paths = paths if memory is None else memory["path"].astype(str).tolist()
    pool_paths = pool["path"].astype(str).tolist() if distil else []
    pool_y = torch.tensor(pool["teacher_score"].to_numpy(), dtype=torch.float32) if distil else None
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as executor:

        def submit(files: list[str], rows: torch.Tensor) -> list[Future]:
            """Decoding of a random crop (and flip) of each row's image, its position drawn from ``gen`` now."""
            draws = torch.rand((len(rows), 3), generator=gen).tolist()
            return [executor.submit(_random_crop, files[r], cfg.crop, u, v, f < 0.5)
                    for r, (u, v, f) in zip(rows.tolist(), draws, strict=True)]

        def plan(idx: torch.Tensor) -> dict:
            """What step ``idx`` draws from ``gen``, in the order it always has, with its images' decoding under
            way; planning the next step before computing this one changes no draw, as computing draws none."""
            step = {"idx": idx, "batch": submit(paths, idx)}
            if distil:
                step["pidx"] = torch.randint(len(pool_paths), (len(idx),), generator=gen)
                step["pool"] = submit(pool_paths, step["pidx"])
            if match:
                step["rows"] = partner_rows(partner_of, idx, cfg.partner_draw, gen)
                step["bank"] = submit(bank_paths, step["rows"].reshape(-1))
            return step

        for epoch in range(cfg.epochs):
            clock = DataWait()
            _train_mode(model, cfg.freeze_bn_stats)
            totals = new_totals()
            lr_start = max(g["lr"] for g in opt.param_groups)
            steps = (torch.randperm(samples, generator=gen) % len(train)).split(cfg.batch_size)
            upcoming = plan(steps[0])
            for k in range(len(steps)):
                step, upcoming = upcoming, plan(steps[k + 1]) if k + 1 < len(steps) else None
                idx, n = step["idx"], len(step["idx"])
                with clock.waiting():
                    batch = _collect(step["batch"] + step.get("pool", []), device, fmt)
                    bank = _collect(step["bank"], device, fmt) if match else None
                noisy = kd_pred = kd_target = None
                with autocast(device, cfg.precision):
                    feats = model.features(batch)
                    if match:
                        with torch.no_grad():
                            noise = model.features(bank)
                        pred, noisy = clean_and_noisy(model.quality, feats[:n], noise.view(*step["rows"].shape, -1),
                                                      cfg.eps, cfg.noise_form)
                    else:
                        pred = model.quality(feats[:n])
                    if distil:
                        kd_pred, kd_target = model.quality(feats[n:]), pool_y[step["pidx"]].to(device)
                terms = qfm_loss(loss_fn, cfg, y[idx].to(device), *as_float(pred, noisy, kd_pred), kd_target)
                lr_end = max(g["lr"] for g in opt.param_groups)
                optimise(opt, sched, terms, totals, steps_per_epoch, cfg.clip_grad_norm,
                         scaler if scaler.is_enabled() else None)
            means = epoch_means(totals)
            history.append({"epoch": epoch + 1, **means, "samples": sum(len(s) for s in steps), "steps": len(steps),
                            "lr_start": lr_start, "lr_end": lr_end, "seconds": clock.total_s,
                            "data_wait": clock.fraction})
            log_epoch(epoch + 1, cfg.epochs, means, f" {clock.total_s:.1f}s, data wait {100 * clock.fraction:.1f}%")
    with torch.no_grad():
        model.eval()
        model.quality.calibrate(over_crops(model.features, train, centre, cfg.batch_size, device), y.to(device))
    return model.eval(), pd.DataFrame(history)


def predict(model: FinetuneModel, meta: pd.DataFrame, recipe: CropRecipe, batch_size: int = 32,
            device: str = "cpu") -> np.ndarray:
    """Image scores (mean over ``recipe``'s crops) for ``meta`` (image_id, path)."""
    device = resolve_device(str(device))
    model.eval().to(device)
    with torch.inference_mode():
        scores = over_crops(model, meta, recipe, batch_size, device)
    return scores.float().cpu().numpy().reshape(len(meta), recipe.n).mean(1)


def scoring_recipe(crops: dict, test_crops: int | None) -> CropRecipe:
    """The crops a fine-tuned model's test images are scored on, their scores averaged: ``test_crops`` random crops
    (None: the config's ``crops.n``) of the config's ``crops`` size, at seeded positions."""
    return CropRecipe(**{**crops, "n": test_crops or crops["n"]})


def save(model: FinetuneModel, path: str | Path, backbone_name: str) -> None:
    """Checkpoint with the backbone name and head spec, so that loading needs no config."""
    with atomic_path(path) as tmp:
        torch.save({"backbone": backbone_name, "spec": model.quality.spec, "state_dict": model.state_dict()}, tmp)


def load(path: str | Path) -> FinetuneModel:
    """The model saved at ``path`` (on CPU, eval mode), every parameter and buffer loaded strictly."""
    with reading(path):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    net, spec = create_backbone(ckpt["backbone"], "none"), ckpt["spec"]
    pixels = data_config(net)
    if (partial := partial_spec(spec)) is not None:
        bottom, top = partial.cut(net)
        model = FinetuneModel(bottom, from_spec(spec, top), pixels)
    else:
        descriptor = MultiScaleDescriptor(net)
        model = FinetuneModel(descriptor, QualityModel.from_spec(spec), pixels)
    load_strict(model, ckpt["state_dict"], str(path))
    return model.eval()
