"""Partial fine-tune: features that move, on the CPU.

A timm backbone is divided at block ``from_block`` (the config's ``partial.from_block``). The bottom (stem and
``blocks[:from_block]``) runs once per crop and its output is cached in fp16 (``extract_activations``), with the
pooled statistics (channel means and standard deviations) of the bottom's stages. The top (``blocks[from_block:]``
and the head convolution) then trains together with the quality model on the cached activations
(``PartialModel``), under the student's full loss (``qfm_iqm.method.train.train``). BatchNorm statistics of
the top stay frozen.

The quality model reads tokens: the top's final map gives one token per spatial position, and the
bottom's stage statistics form one more token, so that quality cues of the early stages stay
reachable by the decoder. The two kinds occupy disjoint channels (a spatial token is its features
followed by zeros, the early token zeros followed by the statistics), so that a mean over the
tokens keeps them apart. A cached sample is one packed vector: the activation map (C x H x W,
flattened) followed by the stage statistics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from qfm_iqm.features.backbone import create_backbone, data_config
from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.features.extract import CropRecipe, Describer, describe_crops
from qfm_iqm.io import InputError
from qfm_iqm.method.model import STD_FLOOR, QualityModel

ACTIVATION, EARLY = "activation", "early"  # the two blocks of a cached sample


def _check_partial(backbone: nn.Module, from_block: int) -> None:
    if not all(hasattr(backbone, name) for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        raise InputError(f"partial fine-tune needs a timm EfficientNet/MobileNet-style backbone (conv_stem, blocks, "
                         f"conv_head); {type(backbone).__name__} is not one")
    if not 1 <= from_block < len(backbone.blocks):
        raise InputError(f"partial.from_block: {from_block} is not a block index in 1..{len(backbone.blocks) - 1}")


class BackboneBottom(nn.Module):
    """Stem and ``blocks[:from_block]``: (B, 3, H, W) -> packed (B, C*h*w + stage statistics)."""

    def __init__(self, backbone: nn.Module, from_block: int) -> None:
        super().__init__()
        _check_partial(backbone, from_block)
        self.stem = nn.Sequential(backbone.conv_stem, backbone.bn1)
        self.blocks = backbone.blocks[:from_block]
        stage_ends = {int(info["module"].split(".")[1]) for info in backbone.feature_info
                      if info["module"].startswith("blocks.")}
        self.stage_ends = sorted(i for i in stage_ends if i < from_block)
        self.early_size = sum(2 * info["num_chs"] for info in backbone.feature_info
                              if info["module"] in {f"blocks.{i}" for i in self.stage_ends})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        stats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                stats += [x.float().mean((2, 3)), x.float().std((2, 3))]
        return torch.cat([x.float().flatten(1), *stats], dim=1)


class BackboneTop(nn.Module):
    """``blocks[from_block:]`` and the head convolution: (B, C, h, w) activations -> (B, h*w, features) tokens.

    BatchNorm layers stay in eval mode (their running statistics frozen) whatever the module's mode.
    """

    def __init__(self, backbone: nn.Module, from_block: int) -> None:
        super().__init__()
        _check_partial(backbone, from_block)
        self.blocks = backbone.blocks[from_block:]
        self.head = nn.Sequential(backbone.conv_head, backbone.bn2)
        self.in_chs = next(m for m in self.blocks.modules() if isinstance(m, nn.Conv2d)).in_channels
        self.num_features = backbone.num_features

    def train(self, mode: bool = True) -> BackboneTop:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x)).flatten(2).transpose(1, 2)


def activation_describer(backbone: nn.Module, from_block: int, recipe: CropRecipe, channels_last: bool = True,
                         device: str = "cpu", *, precision: str) -> tuple[Describer, BackboneBottom]:
    """The describer of packed fp16 bottom activations (what a ``PartialModel`` reads), and the bottom."""
    if recipe.global_view:
        raise InputError("crops.global_view: cached activations describe crops only; the decoder has no global view")
    bottom = BackboneBottom(backbone, from_block)
    return Describer(bottom, data_config(backbone), recipe, channels_last, device, np.float16,
                     precision=precision), bottom


def extract_activations(meta: pd.DataFrame, backbone: str, weights: str | Path, recipe: CropRecipe, from_block: int,
                        batch_size: int = 32, channels_last: bool = True, device: str = "cpu",
                        compile: bool = False, *, precision: str) -> tuple[FeatureSet, dict]:
    """Packed fp16 bottom activations of every recipe crop of ``meta`` (image_id, path), and throughput
    statistics (``describe_crops``). Blocks: ``activation`` (C*h*w) and ``early`` (the bottom stages' statistics)."""
    describer, bottom = activation_describer(create_backbone(backbone, weights), from_block, recipe, channels_last,
                                             device, precision=precision)
    packed, stats = describe_crops(describer, meta, batch_size, compile)
    sizes = [packed.shape[-1] - bottom.early_size, bottom.early_size]
    return FeatureSet(meta["image_id"].astype(str).to_numpy(), packed, [ACTIVATION, EARLY], sizes), stats


class PartialModel(nn.Module):
    """Trainable backbone top -> tokens (+ the early-stage token) -> ``QualityModel`` (decoder head).

    ``forward`` takes packed cached samples (..., activation + early), like ``QualityModel`` takes
    features; partner samples (the semantic noise) go through the top without gradient.
    ``top_lr_scale`` is the top's learning rate relative to the head's.
    """

    def __init__(self, top: BackboneTop, quality: QualityModel, activation_size: int, early_size: int,
                 top_lr_scale: float = 0.1, channels_last: bool = True) -> None:
        super().__init__()
        side = math.isqrt(activation_size // top.in_chs)
        if side * side * top.in_chs != activation_size:
            raise InputError(f"cached activations of size {activation_size} are not a square map of {top.in_chs} "
                             f"channels: were they extracted at another block?")
        self.top, self.quality = top, quality
        self.map_shape = (top.in_chs, side, side)
        self.early_size, self.top_lr_scale = early_size, top_lr_scale
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def tokens(self, packed: torch.Tensor) -> torch.Tensor:
        """(..., packed) -> (..., h*w + 1, features + early): the top's spatial tokens, then the early-stage
        token, in disjoint channels."""
        flat = packed.reshape(-1, packed.shape[-1]).float()
        size, width = math.prod(self.map_shape), self.top.num_features
        maps = flat[:, :size].reshape(-1, *self.map_shape).contiguous(memory_format=self.memory_format)
        spatial, early = self.top(maps), flat[:, size:]
        # filled in place: padding both kinds and concatenating them copied every token twice more
        out = spatial.new_zeros(len(flat), spatial.shape[1] + 1, width + self.early_size,
                                dtype=torch.result_type(spatial, early))
        out[:, :-1, :width] = spatial
        out[:, -1, width:] = early
        return out.reshape(*packed.shape[:-1], *out.shape[1:])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x)

    def score(self, feats: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
              form: str = "add") -> torch.Tensor:
        """The quality model on tokens (``encode``); ``noise``: partner tokens."""
        return self.quality(feats, noise=noise, eps=eps, form=form)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
                form: str = "add") -> torch.Tensor:
        noise_tokens = None
        if noise is not None:
            with torch.no_grad():
                noise_tokens = self.tokens(noise)
        return self.score(self.tokens(x), noise_tokens, eps, form)

    def representation(self, x: torch.Tensor, gated: bool = True) -> torch.Tensor:
        """``QualityModel.representation`` of the top's tokens: the decoder's input, averaged over tokens."""
        return self.represent(self.tokens(x), gated)

    def represent(self, feats: torch.Tensor, gated: bool = True) -> torch.Tensor:
        """``representation`` of encoded tokens (``encode``)."""
        return self.quality.representation(feats, gated)

    @torch.no_grad()
    def _batched_tokens(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        mode = self.training
        self.eval()
        out = torch.cat([self.tokens(x[i: i + batch_size]) for i in range(0, len(x), batch_size)])
        self.train(mode)
        return out

    def fit_normaliser(self, x: torch.Tensor, floor: float = STD_FLOOR, frozen: bool = False,
                       max_samples: int = 2048) -> None:
        """Token standardisation from the initial top's tokens of up to ``max_samples`` samples (evenly
        spaced); not ``frozen`` by default (no clipping), since the tokens move as the top trains."""
        step = max(1, len(x) // max_samples)
        self.quality.fit_normaliser(self._batched_tokens(x[::step]), floor, frozen)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> None:
        """``QualityModel.calibrate`` from eval-mode predictions made ``batch_size`` samples at a time: the tokens
        of a whole training part never exist at once (4650 LIVEC crops: 1.5 GB)."""
        self.quality.reset_output()
        self.eval()
        self.quality.fit_output(torch.cat([self(x[i: i + batch_size]) for i in range(0, len(x), batch_size)]), y)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The quality model's groups, and the top's at ``top_lr_scale`` x ``lr``."""
        return [*self.quality.param_groups(lr, weight_decay),
                {"params": list(self.top.parameters()), "lr": lr * self.top_lr_scale, "weight_decay": weight_decay}]


def with_top(net: nn.Module, name: str, from_block: int, arch: dict, activation_size: int, early_size: int,
             top_lr_scale: float) -> PartialModel:
    """A ``PartialModel`` with a decoder of ``arch`` over the top of ``net`` (timm model ``name``) from block
    ``from_block``, for cached samples of ``activation_size`` + ``early_size``; its ``spec`` rebuilds it."""
    top = BackboneTop(net, from_block)
    quality = QualityModel(top.num_features + early_size, tokens=activation_size // top.in_chs + 1, **arch)
    model = PartialModel(top, quality, activation_size, early_size, top_lr_scale)
    model.spec = {"partial": {"backbone": name, "from_block": from_block, "activation_size": activation_size,
                              "early_size": early_size, "top_lr_scale": top_lr_scale}, **quality.spec}
    return model


def model_for(arch: dict, feats: FeatureSet, backbone: str = "", weights: str | Path = "none",
              partial: dict | None = None) -> nn.Module:
    """A fresh model for ``arch`` over the cache ``feats``: a ``QualityModel`` on pooled features, or, for
    the ``decoder`` head on cached activations, a ``PartialModel`` whose top is ``backbone``'s from block
    ``partial["from_block"]``, initialised from ``weights``."""
    if arch["head"] != "decoder":
        return QualityModel(feats.features.shape[-1], **arch)
    if feats.block_names != [ACTIVATION, EARLY]:
        raise InputError(f"head 'decoder' reads cached activations (blocks {[ACTIVATION, EARLY]}), not "
                         f"{feats.block_names[:3]}...")
    return with_top(create_backbone(backbone, weights), backbone, partial["from_block"], arch, *feats.block_sizes,
                    partial["top_lr_scale"])


def from_spec(spec: dict) -> PartialModel:
    """The (untrained) ``PartialModel`` a checkpoint's ``spec`` describes."""
    cfg = spec["partial"]
    arch = {k: v for k, v in spec.items() if k not in ("partial", "in_dim", "tokens")}
    return with_top(create_backbone(cfg["backbone"], "none"), cfg["backbone"], cfg["from_block"], arch,
                    cfg["activation_size"], cfg["early_size"], cfg["top_lr_scale"])
