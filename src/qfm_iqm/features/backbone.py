"""timm backbones: creation with explicit weights, and multi-scale pooled descriptors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from qfm_iqm.features.weights import load_strict
from qfm_iqm.io import InputError

POOLINGS = {"mean_std": ("mean", "std"), "mean": ("mean",)}  # crops.pooling -> the statistics of a stage
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm reads from a Hugging Face repository


def create_backbone(name: str, weights: str | Path) -> nn.Module:
    """A timm model in eval mode.

    ``weights`` is ``"hub"`` (timm's pretrained download, checked first: ``check_hub_weights``), ``"none"`` (random
    init, for tests of plumbing only) or the path of a state dict in timm layout (``read_state_dict``), loaded strictly.
    """
    import timm  # imports torchvision and torch._dynamo (seconds): only jobs that build a backbone pay for it
    if not timm.is_model(name):
        raise InputError(f"unknown timm backbone {name!r}")
    if str(weights) == "hub":
        check_hub_weights(name)
    model = timm.create_model(name, pretrained=str(weights) == "hub")
    if str(weights) not in ("hub", "none"):
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"backbone weights not found: {path}")
        load_strict(model, read_state_dict(path), str(path))
    return model.eval()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict saved from timm: a ``.safetensors`` file, or a torch file (``.pth``, ``.pt``, ``.bin``)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as err:
            raise InputError(f"backbone weights {path} are not a readable safetensors file: {err}") from err
    return torch.load(path, map_location="cpu", weights_only=True)


def check_hub_weights(name: str) -> None:
    """InputError, one line naming ``name`` and the two ways out, unless timm's pretrained weights of ``name``
    are in the local Hugging Face cache or the hub answers (weights timm fetches from a plain URL are not checked)."""
    import timm
    from huggingface_hub import file_exists, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    repo = cfg.hf_hub_id if cfg is not None else None
    if not repo or any(isinstance(try_to_load_from_cache(repo, f), str) for f in HUB_FILES):
        return
    try:
        if any(file_exists(repo, f) for f in HUB_FILES):
            return
        reason = f"{repo} holds none of {', '.join(HUB_FILES)}"
    except Exception as err:  # noqa: BLE001 - offline mode, no network, a proxy: the client's errors vary by version
        reason = f"the hub did not answer: {type(err).__name__}"
    raise InputError(f"backbone.weights 'hub': timm's pretrained weights of {name} are not cached here and cannot be "
                     f"downloaded ({reason}); set backbone.weights to a state dict saved from timm (.pth or "
                     f".safetensors), or run once with network access so that they are cached")


def data_config(model: nn.Module) -> dict:
    """timm's preprocessing config (mean, std, interpolation) for ``model``."""
    import timm
    return timm.data.resolve_model_data_config(model)


class MultiScaleDescriptor(nn.Module):
    """Pooled statistics of a backbone's stages (Hosu et al.'s multi-level spatially pooled features).

    For each chosen intermediate map (``stages``: "all", or stage indices of ``feature_info``; None: all): channel
    means, and with ``pooling`` "mean_std" (or None) standard deviations, over space; for the final map: channel means
    (the backbone's own pre-logits descriptor, used as *semantic* feature). Output: (batch, sum of block sizes).
    """

    def __init__(self, backbone: nn.Module, stages: str | Sequence[int] | None = None,
                 pooling: str | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        channels = [info["num_chs"] for info in backbone.feature_info]
        stages = range(len(channels)) if stages is None else stages
        pooling = next(iter(POOLINGS)) if pooling is None else pooling
        if pooling not in POOLINGS:
            raise InputError(f"crops.pooling: {pooling!r} is not one of {POOLINGS}")
        if isinstance(stages, str):
            if stages != "all":
                raise InputError(f"crops.stages: {stages!r} is neither 'all' nor a list of stage indices")
            stages = range(len(channels))
        if bad := [s for s in stages if not 0 <= s < len(channels)]:
            raise InputError(f"crops.stages: {bad} are not stage indices of this backbone (0..{len(channels) - 1})")
        self.stages, self.stats = sorted(set(stages)), POOLINGS[pooling]
        self.block_names = [f"stage{i}_{stat}" for i in self.stages for stat in self.stats]
        self.block_names.append("final_mean")
        self.block_sizes = [channels[i] for i in self.stages for _ in self.stats]
        self.block_sizes.append(backbone.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        final, maps = self.backbone.forward_intermediates(x)
        if final.ndim == 3:  # (B, tokens, C) from transformers
            final = final.mean(1)
        else:
            final = final.float().mean((2, 3))
        stats = []
        for i in self.stages:
            fmap = maps[i].float()
            stats += [fmap.mean((2, 3)), *([fmap.std((2, 3))] if "std" in self.stats else [])]
        return torch.cat([*stats, final], dim=1)
