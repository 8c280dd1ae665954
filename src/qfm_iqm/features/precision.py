"""Numeric precision of forward passes: ``fp32``, or ``bf16`` (bfloat16 autocast; weights stay fp32)."""

from __future__ import annotations

import torch

PRECISIONS = ("bf16", "fp32")


def autocast(device: torch.device | str, precision: str) -> torch.autocast:
    """The forward passes' precision context: bfloat16 autocast for ``bf16``, a no-op for ``fp32``."""
    if precision not in PRECISIONS:
        raise KeyError(f"unknown precision {precision!r}; known: {list(PRECISIONS)}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
