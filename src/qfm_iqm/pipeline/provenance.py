"""Provenance of a job: code version, configuration, packages, seeds, device and wall time."""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("qfm-iqm", "torch", "torchvision", "timm", "numpy", "pandas", "scipy", "scikit-learn", "snakemake")


def digest(obj: Any) -> str:
    """SHA-256 of an object's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def git_state(folder: Path = Path(__file__).parent) -> dict[str, str | bool]:
    """The commit of the checkout this package runs from, and whether it has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown (not a git checkout)", "dirty": False}


def seeds(params: dict, prefix: str = "") -> dict[str, int]:
    """Every ``seed`` in the job's params, by dotted key."""
    found = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(seeds(value, f"{name}."))
        elif key == "seed" or key.endswith("_seed"):
            found[name] = value
    return found


def device(params: dict) -> dict[str, Any]:
    """The device the job asked for (a ``device`` in its params, else the CPU) and what the machine offers."""
    import torch

    requested = list(requested_devices(params).values())
    info = {"requested": requested or ["cpu"], "cuda_available": torch.cuda.is_available(),
            "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def requested_devices(params: dict) -> dict[str, str]:
    """Every ``device`` in the job's params, by dotted key."""
    return {k: v for k, v in _flat(params).items() if k.split(".")[-1] == "device"}


def _flat(params: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def record(rule: str, params: dict, config: dict, outputs: list[str], started: datetime, wall_s: float) -> dict:
    """The provenance record of one finished job."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"rule": rule, "outputs": outputs, "git": git_state(), "config_sha256": digest(config),
            "params_sha256": digest(params), "seeds": seeds(params), "device": device(params),
            "packages": versions, "python": platform.python_version(), "host": socket.gethostname(),
            "started_utc": started.astimezone(UTC).isoformat(timespec="seconds"), "wall_s": round(wall_s, 3)}
