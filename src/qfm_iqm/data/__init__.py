"""Dataset acquisition: one preparer per dataset kind, all ending in the uniform meta table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from qfm_iqm.data.labels import prepare_labels
from qfm_iqm.data.livec import prepare_livec
from qfm_iqm.io import write_csv

PREPARERS: dict[str, Callable[..., pd.DataFrame]] = {
    "livec": prepare_livec,
    "labels": prepare_labels,
}


def prepare(kind: str, out_meta: str | Path, **options) -> pd.DataFrame:
    """Prepare a dataset of ``kind`` from its official layout and write its meta table."""
    if kind not in PREPARERS:
        raise KeyError(f"unknown dataset kind {kind!r}; known: {sorted(PREPARERS)} and 'demo'")
    meta = PREPARERS[kind](**options)
    write_csv(meta, out_meta)
    return meta
