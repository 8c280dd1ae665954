"""Checkpoints of quality models: saved with their architecture, loaded without a config."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qfm_iqm.io import atomic_path, reading
from qfm_iqm.method.ensemble import SeedEnsemble
from qfm_iqm.method.model import QualityModel
from qfm_iqm.method.partial import from_spec


def save_model(model: nn.Module, path: Any, **extra: Any) -> None:
    """Checkpoint with its architecture (``model.spec``), so that loading needs no config."""
    with atomic_path(path) as tmp:
        torch.save({"spec": model.spec, "state_dict": model.state_dict(), **extra}, tmp)


def load_model(path: Any) -> nn.Module:
    """The model saved at ``path``, in eval mode: a ``QualityModel``, a ``qfm_iqm.method.partial.PartialModel``
    (trained backbone top and decoder) when its spec has a ``partial`` section, or a ``SeedEnsemble`` of those when
    it has ``members``."""
    with reading(path):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = from_checkpoint_spec(ckpt["spec"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def from_checkpoint_spec(spec: dict) -> nn.Module:
    """An untrained model of a checkpoint's ``spec``."""
    if "members" in spec:
        return SeedEnsemble([from_checkpoint_spec(member) for member in spec["members"]])
    if "partial" in spec:
        return from_spec(spec)
    return QualityModel.from_spec(spec)
