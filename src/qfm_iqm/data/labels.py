"""A generic labelled folder: a CSV of image names and scores next to an image directory."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from qfm_iqm.data.meta import build_meta, image_paths, numeric_scores, read_label_table, stem_ids
from qfm_iqm.io import InputError

DATASET = "Dataset"  # how messages about the folder and its label file name it


def prepare_labels(labels: str | Path, images: str | Path, image_column: str, score_column: str,
                   higher_is_better: bool, ref_column: str | None = None) -> pd.DataFrame:
    """Meta table from a label CSV (or .xlsx): one row per image, ids (file stems) unique, scores numeric and not all
    equal, every image present under ``images``; InputError naming the file, row, column and value otherwise."""
    labels = Path(labels)
    columns = [image_column, score_column, *filter(None, [ref_column])]
    table = read_label_table(labels, DATASET, columns, dtype=str)  # ref ids such as '007' stay text
    rows = list(table.index)
    names = _names(table, image_column)
    image_id = stem_ids(names, labels, rows)
    raw = numeric_scores(table[score_column], names, labels, score_column, rows)
    return build_meta(DATASET, image_id=image_id, path=image_paths(Path(images), names, DATASET, labels), raw=raw,
                      higher_is_better=higher_is_better, ref_id=list(table[ref_column]) if ref_column else None,
                      distortion="unknown", source=labels, column=score_column)


def _names(table: pd.DataFrame, image_column: str) -> list[str]:
    return [name.strip() for name in table[image_column]]


def listed_images(labels: str | Path, images: str | Path, image_column: str) -> list[str]:
    """The images a label file lists, as paths under ``images`` (hidden ones and ``../`` included): what its
    preparation reads, and so what the workflow tracks. Only those present: a missing one, or a label file that
    cannot be read, is left to ``prepare_labels`` to report, with its row."""
    try:
        table = read_label_table(Path(labels), DATASET, [image_column], dtype=str)
    except InputError:
        return []
    paths = [os.path.join(images, name) for name in _names(table, image_column)]
    return [path for path in dict.fromkeys(paths) if os.path.isfile(path)]
