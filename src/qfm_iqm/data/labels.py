"""A generic labelled folder: a CSV of image names and scores next to an image directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qfm_iqm.data.meta import META_COLUMNS, normalise_scores
from qfm_iqm.io import InputError


def prepare_labels(labels: str | Path, images: str | Path, image_column: str, score_column: str,
                   higher_is_better: bool, ref_column: str | None = None) -> pd.DataFrame:
    """Meta table from a label CSV; every score must be numeric and every image present."""
    labels, images = Path(labels), Path(images)
    if not labels.is_file():
        raise InputError(f"label file not found: {labels}")
    table = pd.read_csv(labels, dtype=str, keep_default_na=False)
    for col in filter(None, (image_column, score_column, ref_column)):
        if col not in table.columns:
            raise InputError(f"{labels}: column {col!r} missing (has {list(table.columns)})")
    raw = pd.to_numeric(table[score_column], errors="coerce")
    bad = raw[~np.isfinite(raw.to_numpy(dtype=np.float64))]
    if len(bad):
        row = bad.index[0]
        raise InputError(f"{labels}, row {row + 2}: score {table.at[row, score_column]!r} in column "
                         f"{score_column!r} is not a number")
    paths = [images / name for name in table[image_column]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{labels}: image not found: {missing[0]} ({len(missing)} missing in all)")
    ids = [Path(n).stem for n in table[image_column]]
    meta = pd.DataFrame({
        "image_id": ids,
        "path": [str(p.resolve()) for p in paths],
        "score": normalise_scores(raw.to_numpy(), higher_is_better),
        "score_raw": raw.to_numpy(dtype=np.float64),
        "ref_id": table[ref_column] if ref_column else ids,
        "distortion": "unknown",
        "level": 0,
    })
    return meta[META_COLUMNS]
