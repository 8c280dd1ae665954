"""The uniform meta table every dataset is prepared into, and its reader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from qfm_iqm.io import InputError

META_COLUMNS = ["image_id", "path", "score", "score_raw", "ref_id", "distortion", "level"]
POOL_COLUMNS = ["image_id", "path", "ref_id", "distortion", "level"]


def normalise_scores(raw: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Min-max scale to [0, 1] with 1 = best quality (DMOS flipped)."""
    raw = np.asarray(raw, dtype=np.float64)
    span = raw.max() - raw.min()
    if not np.isfinite(span) or span <= 0:
        raise InputError("scores must be finite and not all equal")
    norm = (raw - raw.min()) / span
    return norm if higher_is_better else 1.0 - norm


def read_meta(path: str | os.PathLike, columns: list[str] = META_COLUMNS) -> pd.DataFrame:
    """Read a meta table, check its columns and resolve image paths to absolute ones."""
    path = Path(path)
    df = pd.read_csv(path, dtype={"image_id": str, "ref_id": str})
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing columns {missing}")
    df["path"] = [str((path.parent / p).resolve()) for p in df["path"]]
    return df
