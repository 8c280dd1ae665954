"""Torch devices named in a config or on the command line, checked against what torch sees on this machine."""

from __future__ import annotations

from qfm_iqm.io import InputError

NAMES = "cpu, cuda or cuda:N"


def check_device(name: str, key: str) -> None:
    """InputError naming ``key`` unless torch can use the device ``name`` here: ``cpu``; ``auto`` (CUDA where there
    is one, else the CPU); ``cuda`` or ``cuda:N`` where torch sees a CUDA device (N of them); ``mps`` where Metal
    is available."""
    if name in ("cpu", "auto"):
        return
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"{key}: {name!r} is not a device ({NAMES})") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise InputError(f"{key}: {name!r}, but torch sees no CUDA device on this machine (use cpu)")
        if device.index is not None and device.index >= count:
            raise InputError(f"{key}: {name!r}, but torch sees {count} CUDA device(s) here: cuda:0 .. cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"{key}: {name!r}, but Metal (mps) is not available on this machine (use cpu)")
    elif device.type != "cpu":
        raise InputError(f"{key}: {name!r} is not supported ({NAMES})")
