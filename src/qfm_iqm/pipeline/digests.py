"""Digests of the workflow's intermediate artefacts (feature caches, activations, checkpoints, tables).

When a job has made its outputs, each ``.npz``, ``.pt`` and ``.csv`` file among them under ``results/`` gets
``<file>.sha256`` beside it, in ``sha256sum``'s format (``data/`` is DVC's, which keeps its own digests); before a job runs, each of its inputs that has one is checked against it. A file
changed since its job made it (a disk fault, a copy cut short, an edit) stops the job with one line naming it,
rather than a rerun of the job that made it: Snakemake plans every job before any runs, and a fault in
``results/`` is worth seeing. Files made before digests were written have none and are not checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from qfm_iqm.io import InputError, sha256sum, write_text

SUFFIXES = (".npz", ".pt", ".csv")
ROOT = "results"  # the workflow's own artefacts, relative to its working directory
SIDECAR = ".sha256"


def sidecar(path: str | os.PathLike) -> Path:
    return Path(f"{path}{SIDECAR}")


def _artefacts(paths: Iterable[str | os.PathLike]) -> list[Path]:
    return [Path(p) for p in paths if Path(p).parts[:1] == (ROOT,) and Path(p).suffix in SUFFIXES and Path(p).is_file()]


def record(paths: Iterable[str | os.PathLike]) -> None:
    """Write the digest of each artefact among ``paths`` beside it."""
    for path in _artefacts(paths):
        write_text(f"{sha256sum(path)}  {path.name}\n", sidecar(path))


def verify(paths: Iterable[str | os.PathLike]) -> None:
    """InputError naming the first artefact among ``paths`` whose content differs from its recorded digest."""
    for path in _artefacts(paths):
        if not sidecar(path).is_file():
            continue
        recorded = sidecar(path).read_text().split()[0]
        try:
            got = sha256sum(path)
        except OSError as err:
            raise InputError(f"{path} cannot be read ({err.strerror}); delete it and rerun") from None
        if got != recorded:
            raise InputError(f"{path} is corrupt (its SHA-256 is {got[:16]}..., not the {recorded[:16]}... recorded in "
                             f"{sidecar(path).name} when it was made); delete it and rerun")
