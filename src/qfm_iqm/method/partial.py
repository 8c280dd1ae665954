"""Partial fine-tune: features that move, on the CPU; and the cut of a backbone that fine-tune mode trains.

A timm backbone is divided at block ``from_block`` (the config's ``partial.from_block``; ``cut``). The bottom runs
once per crop and its output is cached in fp16 (``extract_activations``). The top then trains together with the
quality model on the cached activations (``PartialModel``), under the student's full loss
(``qfm_iqm.method.train.train``). Two kinds of backbone are cut:

- an EfficientNet/MobileNet-style CNN: the bottom is the stem and ``blocks[:from_block]``, and its output is the
  activation map with the pooled statistics (channel means and standard deviations) of its stages; the top is
  ``blocks[from_block:]`` and the head convolution, its BatchNorm statistics frozen. The top's final map gives one
  token per spatial position, and the bottom's stage statistics form one more token, so that quality cues of the
  early stages stay reachable by the decoder. The two kinds occupy disjoint channels (a spatial token is its
  features followed by zeros, the early token zeros followed by the statistics), so that a mean over the tokens
  keeps them apart. A cached sample is one packed vector: the map (C x H x W, flattened), then the statistics;
- a VisionTransformer (DEIQT's encoder): the bottom is the patch and position embedding and ``blocks[:from_block]``
  (0: the embedding only), the top ``blocks[from_block:]`` and the final norm. The tokens are the top's, the CLS
  token first (what the decoder's ``cls`` query reads); a cached sample is the bottom's tokens, flattened.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from qfm_iqm.features.backbone import create_backbone, data_config
from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.features.extract import CropRecipe, Describer, describe_crops
from qfm_iqm.io import InputError
from qfm_iqm.method.model import STD_FLOOR, QualityModel, with_legacy_keys

ACTIVATION, EARLY = "activation", "early"  # the two blocks of a cached sample


def is_vit(backbone: nn.Module) -> bool:
    """Whether ``backbone`` is a timm VisionTransformer (patch embedding, class token, blocks, final norm)."""
    return all(hasattr(backbone, name) for name in ("patch_embed", "cls_token", "blocks", "norm", "forward_features"))


def _check_partial(backbone: nn.Module, from_block: int) -> None:
    if is_vit(backbone):
        if not 0 <= from_block < len(backbone.blocks):
            raise InputError(f"partial.from_block: {from_block} is not a block index in 0..{len(backbone.blocks) - 1} "
                             f"of {type(backbone).__name__}")
        return
    if not all(hasattr(backbone, name) for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        raise InputError(f"partial fine-tune needs a timm VisionTransformer or an EfficientNet/MobileNet-style "
                         f"backbone (conv_stem, blocks, conv_head); {type(backbone).__name__} is neither")
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
        self.cls_first = False  # no token summarises the image

    def input_shape(self, activation_size: int) -> tuple[int, ...]:
        """The activation map (C, h, w) a cached sample's ``activation_size`` values are."""
        side = math.isqrt(activation_size // self.in_chs)
        if side * side * self.in_chs != activation_size:
            raise InputError(f"cached activations of size {activation_size} are not a square map of {self.in_chs} "
                             f"channels: were they extracted at another block?")
        return self.in_chs, side, side

    def token_count(self, activation_size: int) -> int:
        """Spatial tokens per cached sample."""
        return math.prod(self.input_shape(activation_size)[1:])

    def train(self, mode: bool = True) -> BackboneTop:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x)).flatten(2).transpose(1, 2)


class ViTBottom(nn.Module):
    """A VisionTransformer's embedding and ``blocks[:from_block]``: (B, 3, H, W) -> (B, tokens x width) flattened;
    the timm model itself with its later blocks, final norm and classifier taken out (``cut``)."""

    early_size = 0  # no stage statistics: the tokens carry the early blocks' output

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x).float().flatten(1)


class ViTTop(nn.Module):
    """A VisionTransformer's ``blocks[from_block:]`` and final norm: (B, tokens, width) -> (B, tokens, width), the
    class token first (``cls_first``)."""

    def __init__(self, blocks: nn.Sequential, norm: nn.Module, width: int, cls_first: bool) -> None:
        super().__init__()
        self.blocks, self.norm = blocks, norm
        self.num_features, self.cls_first = width, cls_first

    def input_shape(self, activation_size: int) -> tuple[int, ...]:
        """The token sequence (tokens, width) a cached sample's ``activation_size`` values are."""
        if activation_size % self.num_features:
            raise InputError(f"cached activations of size {activation_size} are not tokens of width "
                             f"{self.num_features}: were they extracted from another backbone?")
        return activation_size // self.num_features, self.num_features

    def token_count(self, activation_size: int) -> int:
        """Tokens (class token included) per cached sample."""
        return self.input_shape(activation_size)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(x))


def cut(backbone: nn.Module, from_block: int) -> tuple[nn.Module, nn.Module]:
    """The bottom and top of ``backbone`` at ``from_block`` (``BackboneBottom`` and ``BackboneTop`` for a CNN, which
    share the backbone's modules; ``ViTBottom`` and ``ViTTop`` for a VisionTransformer, which is taken apart)."""
    _check_partial(backbone, from_block)
    if not is_vit(backbone):
        return BackboneBottom(backbone, from_block), BackboneTop(backbone, from_block)
    top = ViTTop(backbone.blocks[from_block:], backbone.norm, backbone.embed_dim, backbone.cls_token is not None)
    backbone.blocks, backbone.norm = backbone.blocks[:from_block], nn.Identity()
    backbone.reset_classifier(0)
    return ViTBottom(backbone), top


@dataclass(frozen=True)
class PartialSpec:
    """Where partial fine-tune cuts the backbone: its blocks from ``from_block`` on train, at ``top_lr_scale`` x the
    head's learning rate. The config's ``partial`` section; a checkpoint's adds the backbone and the cached sizes."""

    from_block: int
    top_lr_scale: float

    def cut(self, backbone: nn.Module) -> tuple[nn.Module, nn.Module]:
        """The bottom and top of ``backbone`` at ``from_block`` (``cut``)."""
        return cut(backbone, self.from_block)


def partial_spec(settings: Mapping[str, Any]) -> PartialSpec | None:
    """The ``PartialSpec`` of the ``partial`` section of a config, a rule's model settings or a model's (checkpoint's)
    spec; None without one (pooled heads)."""
    section = settings.get("partial")
    return None if section is None else PartialSpec(section["from_block"], section["top_lr_scale"])


def activation_describer(backbone: nn.Module, from_block: int, recipe: CropRecipe, channels_last: bool = True,
                         device: str = "cpu", *, precision: str) -> tuple[Describer, BackboneBottom | ViTBottom]:
    """The describer of packed fp16 bottom activations (what a ``PartialModel`` reads), and the bottom."""
    if recipe.global_view:
        raise InputError("crops.global_view: cached activations describe crops only; the decoder has no global view")
    pixels = data_config(backbone)
    bottom = cut(backbone, from_block)[0]
    return Describer(bottom, pixels, recipe, channels_last, device, np.float16, precision=precision), bottom


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
    """Trainable backbone top -> tokens (+ the early-stage token of a CNN) -> ``QualityModel`` (decoder head).

    ``forward`` takes packed cached samples (..., activation + early), like ``QualityModel`` takes
    features; partner samples (the semantic noise) go through the top without gradient.
    ``top_lr_scale`` is the top's learning rate relative to the head's.
    """

    def __init__(self, top: BackboneTop | ViTTop, quality: QualityModel, activation_size: int, early_size: int,
                 top_lr_scale: float, channels_last: bool = True) -> None:
        super().__init__()
        self.top, self.quality = top, quality
        self.map_shape = top.input_shape(activation_size)
        self.early_size, self.top_lr_scale = early_size, top_lr_scale
        self.memory_format = torch.channels_last if channels_last and len(self.map_shape) == 3 \
            else torch.contiguous_format

    def tokens(self, packed: torch.Tensor) -> torch.Tensor:
        """(..., packed) -> (..., tokens, features + early): the top's tokens, then (a CNN's) early-stage token, in
        disjoint channels."""
        flat = packed.reshape(-1, packed.shape[-1]).float()
        size, width = math.prod(self.map_shape), self.top.num_features
        maps = flat[:, :size].reshape(-1, *self.map_shape).contiguous(memory_format=self.memory_format)
        spatial, early = self.top(maps), flat[:, size:]
        if not self.early_size:
            return spatial.reshape(*packed.shape[:-1], *spatial.shape[1:])
        # filled in place: padding both kinds and concatenating them copied every token twice more
        out = spatial.new_zeros(len(flat), spatial.shape[1] + 1, width + self.early_size,
                                dtype=torch.result_type(spatial, early))
        out[:, :-1, :width] = spatial
        out[:, -1, width:] = early
        return out.reshape(*packed.shape[:-1], *out.shape[1:])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x)

    def score(self, feats: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
              form: str | None = None) -> torch.Tensor:
        """The quality model on tokens (``encode``); ``noise``: partner tokens."""
        return self.quality(feats, noise=noise, eps=eps, form=form)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, eps: float = 0.0,
                form: str | None = None) -> torch.Tensor:
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


def with_top(top: BackboneTop | ViTTop, name: str, partial: PartialSpec, arch: dict, activation_size: int,
             early_size: int) -> PartialModel:
    """A ``PartialModel`` with a decoder of ``arch`` over ``top``, the top of timm model ``name`` cut where ``partial``
    says, for cached samples of ``activation_size`` + ``early_size``; its ``spec`` rebuilds it."""
    if arch.get("query") == "cls" and not top.cls_first:
        raise InputError(f"arch.query 'cls' reads a ViT's class token, and backbone {name} has none: use query "
                         f"'pooled' or 'learned'")
    tokens = top.token_count(activation_size) + (1 if early_size else 0)
    quality = QualityModel(top.num_features + early_size, tokens=tokens, **arch)
    model = PartialModel(top, quality, activation_size, early_size, partial.top_lr_scale)
    model.spec = {"partial": {"backbone": name, **asdict(partial), "activation_size": activation_size,
                              "early_size": early_size}, **quality.spec}
    return model


def model_for(arch: dict, feats: FeatureSet, backbone: str = "", weights: str | Path = "none",
              partial: PartialSpec | None = None) -> nn.Module:
    """A fresh model for ``arch`` over the cache ``feats``: a ``QualityModel`` on pooled features, or, for
    the ``decoder`` head on cached activations, a ``PartialModel`` whose top is ``backbone``'s cut by ``partial``,
    initialised from ``weights``."""
    if arch["head"] != "decoder":
        return QualityModel(feats.features.shape[-1], **arch)
    if feats.block_names != [ACTIVATION, EARLY]:
        raise InputError(f"head 'decoder' reads cached activations (blocks {[ACTIVATION, EARLY]}), not "
                         f"{feats.block_names[:3]}...")
    top = partial.cut(create_backbone(backbone, weights))[1]
    return with_top(top, backbone, partial, arch, *feats.block_sizes)


def from_spec(spec: dict, top: BackboneTop | ViTTop | None = None) -> PartialModel:
    """The (untrained) ``PartialModel`` a checkpoint's ``spec`` describes, over ``top`` (default: a fresh one)."""
    cfg, partial = spec["partial"], partial_spec(spec)
    arch = {k: v for k, v in with_legacy_keys(spec).items() if k not in ("partial", "in_dim", "tokens")}
    if top is None:
        top = partial.cut(create_backbone(cfg["backbone"], "none"))[1]
    return with_top(top, cfg["backbone"], partial, arch, cfg["activation_size"], cfg["early_size"])
