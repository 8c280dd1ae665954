"""Numeric precision of forward passes: ``fp32``, ``bf16`` (bfloat16 autocast; weights stay fp32), or ``amp``, mixed
precision as DEIQT trains: float16 autocast with a gradient scaler on CUDA, bfloat16 autocast elsewhere."""

from __future__ import annotations

import torch

PRECISIONS = ("bf16", "fp32", "amp")


def autocast_dtype(device: torch.device | str, precision: str) -> torch.dtype | None:
    """The dtype the forward passes run in under ``precision`` on ``device`` (None: fp32, no autocast)."""
    if precision not in PRECISIONS:
        raise KeyError(f"unknown precision {precision!r}; known: {list(PRECISIONS)}")
    if precision == "fp32":
        return None
    return torch.float16 if precision == "amp" and torch.device(device).type == "cuda" else torch.bfloat16


def autocast(device: torch.device | str, precision: str) -> torch.autocast:
    """The forward passes' precision context: autocast to ``autocast_dtype``, a no-op for ``fp32``."""
    dtype = autocast_dtype(device, precision)
    return torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def grad_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler:
    """The loss scaler of a training step: active under float16 (``amp`` on CUDA), a pass-through otherwise."""
    return torch.amp.GradScaler(torch.device(device).type,
                                enabled=autocast_dtype(device, precision) == torch.float16)
