"""The uniform meta table every dataset is prepared into, and its reader."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
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


# --- helpers shared by the official-layout preparers (live, csiq, tid2013, kadid10k, koniq10k, spaq, livefb) ---


def require_file(path: Path, dataset: str, what: str = "label file") -> Path:
    """``path`` if it is a file, else InputError naming the dataset and the file."""
    if not path.is_file():
        raise InputError(f"{dataset} {what} not found: {path}")
    return path


def require_columns(table: pd.DataFrame, columns: list[str], source: str | os.PathLike) -> None:
    """InputError naming ``source`` and the columns it lacks."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing} (has {list(table.columns)})")


def numeric_scores(values, names: list[str], source: str | os.PathLike, column: str) -> np.ndarray:
    """Scores as float64, or InputError naming the label file, the column and the first bad item."""
    values = list(values)
    scores = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise InputError(f"{source}: {column} of {names[bad[0]]} is not a number ({values[bad[0]]!r})")
    return scores


def check_count(dataset: str, root: str | os.PathLike, expected: int, found: int) -> None:
    if found != expected:
        raise InputError(f"{dataset} at {root}: expected {expected} images, found {found}")


def case_insensitive_index(folder: Path, dataset: str) -> dict[str, Path]:
    """Every file below ``folder`` keyed by its lower-case name (releases mix ``I``/``i`` and ``.BMP``/``.bmp``)."""
    if not folder.is_dir():
        raise InputError(f"{dataset} image folder not found: {folder}")
    index: dict[str, Path] = {}
    for dirpath, _, files in sorted(os.walk(folder.resolve())):
        for name in sorted(files):
            index.setdefault(name.lower(), Path(dirpath) / name)
    return index


def image_paths(folder: Path, names: list[str], dataset: str, listed_in: str | os.PathLike,
                index: dict[str, Path] | None = None) -> list[str]:
    """Absolute paths of the listed images (exact names under ``folder``, or looked up in ``index``)."""
    base = folder.resolve()
    paths = []
    for name in names:
        path = index.get(Path(name).name.lower()) if index is not None else base / name
        if path is None or not path.is_file():
            raise InputError(f"{dataset} image listed in {listed_in} not found: {base / name}")
        paths.append(str(path))
    return paths


def build_meta(dataset: str, *, image_id: list[str], path: list[str], raw: np.ndarray, higher_is_better: bool,
               ref_id: list[str] | None = None, distortion: str | list[str] = "authentic",
               level: int | list[int] = 0, **extra: list) -> pd.DataFrame:
    """The uniform meta table; ``ref_id`` defaults to ``image_id`` (authentic sets), ``extra`` adds columns."""
    meta = pd.DataFrame({
        "image_id": image_id,
        "path": path,
        "score": normalise_scores(raw, higher_is_better),
        "score_raw": np.asarray(raw, dtype=np.float64),
        "ref_id": image_id if ref_id is None else ref_id,
        "distortion": distortion,
        "level": level,
        **extra,
    })
    dup = meta["image_id"][meta["image_id"].duplicated()]
    if len(dup):
        raise InputError(f"{dataset}: image id {dup.iloc[0]!r} occurs more than once")
    meta["level"] = meta["level"].astype(int)
    return meta[META_COLUMNS + list(extra)]


def parse_synthetic_name(pattern: re.Pattern, name: str, *, types: tuple[str, ...], dataset: str, form: str,
                         ref_case: Callable[[str], str] = str) -> tuple[str, int, int]:
    """(reference, type 1..len(types), level) from a name matched by ``pattern``'s three groups."""
    match = pattern.match(name)
    if not match or not 1 <= int(match[2]) <= len(types):
        raise InputError(f"{dataset} image name {name!r} is not of the form {form} (type in 1..{len(types)})")
    return ref_case(match[1]), int(match[2]), int(match[3])


def synthetic_meta(dataset: str, *, image_id: list[str], path: list[str], raw: np.ndarray,
                   parsed: list[tuple[str, int, int]], types: tuple[str, ...]) -> pd.DataFrame:
    """Meta table of a synthetic set whose names encode (reference, type, level); higher raw = better."""
    return build_meta(dataset, image_id=image_id, path=path, raw=raw, higher_is_better=True,
                      ref_id=[ref for ref, _, _ in parsed], distortion=[types[kind - 1] for _, kind, _ in parsed],
                      level=[level for _, _, level in parsed])


def read_label_table(path: Path, dataset: str, columns: list[str], **read_options) -> pd.DataFrame:
    """A .csv or .xlsx label file with the required ``columns`` (first is the image name, read as text)."""
    require_file(path, dataset)
    reader = pd.read_excel if path.suffix.lower() in (".xlsx", ".xls") else pd.read_csv
    table = reader(path, dtype={columns[0]: str}, keep_default_na=False, **read_options)  # report 'n/a' as written
    table.columns = [str(c).strip() for c in table.columns]
    require_columns(table, columns, path)
    listed = table[columns[0]].fillna("").astype(str).str.strip() != ""
    return table[listed].reset_index(drop=True)  # spreadsheets may end in blank rows


def authentic_meta(dataset: str, *, names: list[str], folder: Path, raw: np.ndarray, listed_in: Path,
                   **extra: list) -> pd.DataFrame:
    """Meta table of an authentic set: id = file stem, ref_id = id, distortion 'authentic', higher raw = better."""
    return build_meta(dataset, image_id=[Path(n).stem for n in names],
                      path=image_paths(folder, names, dataset, listed_in), raw=raw, higher_is_better=True, **extra)
