"""timm backbones: creation with explicit weights, and multi-scale pooled descriptors."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from qfm_iqm.features.weights import load_strict
from qfm_iqm.io import InputError


def create_backbone(name: str, weights: str | Path) -> nn.Module:
    """A timm model in eval mode.

    ``weights`` is ``"hub"`` (timm's pretrained download), ``"none"`` (random init, for tests
    of plumbing only) or the path of a state dict in timm layout, loaded strictly.
    """
    import timm  # imports torchvision and torch._dynamo (seconds): only jobs that build a backbone pay for it
    if not timm.is_model(name):
        raise InputError(f"unknown timm backbone {name!r}")
    model = timm.create_model(name, pretrained=str(weights) == "hub")
    if str(weights) not in ("hub", "none"):
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"backbone weights not found: {path}")
        load_strict(model, torch.load(path, map_location="cpu", weights_only=True), str(path))
    return model.eval()


def data_config(model: nn.Module) -> dict:
    """timm's preprocessing config (mean, std, interpolation) for ``model``."""
    import timm
    return timm.data.resolve_model_data_config(model)


class MultiScaleDescriptor(nn.Module):
    """Pooled statistics of every stage of a backbone.

    For each intermediate map: channel means and standard deviations over space; for the
    final map: channel means (the backbone's own pre-logits descriptor, used as *semantic*
    feature). Output: (batch, sum of block sizes).
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        channels = [info["num_chs"] for info in backbone.feature_info]
        self.block_names = [f"stage{i}_{stat}" for i in range(len(channels)) for stat in ("mean", "std")]
        self.block_names.append("final_mean")
        self.block_sizes = [c for c in channels for _ in range(2)]
        self.block_sizes.append(backbone.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        final, maps = self.backbone.forward_intermediates(x)
        if final.ndim == 3:  # (B, tokens, C) from transformers
            final = final.mean(1)
        else:
            final = final.float().mean((2, 3))
        stats = []
        for fmap in maps:
            fmap = fmap.float()
            stats += [fmap.mean((2, 3)), fmap.std((2, 3))]
        return torch.cat([*stats, final], dim=1)
