"""The uniform meta table every dataset is prepared into, and its reader."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from qfm_iqm.io import InputError

log = logging.getLogger(__name__)

META_COLUMNS = ["image_id", "path", "score", "score_raw", "ref_id", "distortion", "level"]
POOL_COLUMNS = ["image_id", "path", "ref_id", "distortion", "level"]
CRUSH_FACTOR = 1e3  # a score this many median absolute deviations from the median squeezes the others on [0, 1]


def normalise_scores(raw: np.ndarray, higher_is_better: bool = True, source: str | os.PathLike | None = None,
                     column: str | None = None) -> np.ndarray:
    """Min-max scale to [0, 1] with 1 = best quality (DMOS flipped); errors name ``source`` and ``column`` if given."""
    raw = np.asarray(raw, dtype=np.float64)
    where = f"{source}: " if source else ""
    if not np.isfinite(raw).all():
        raise InputError(f"{where}scores must be finite")
    with np.errstate(over="ignore"):
        span = raw.max() - raw.min()
    if not np.isfinite(span):
        raise InputError(f"{where}scores from {raw.min():g} to {raw.max():g} span more than a float can hold")
    if span == 0:
        in_column = f" in column {column!r}" if column else ""
        raise InputError(f"{where}every score{in_column} is {float(raw[0])}; scores must vary")
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


def numeric_scores(values, names: list[str], source: str | os.PathLike, column: str,
                   rows: list[int] | None = None) -> np.ndarray:
    """Scores as float64, or InputError naming the label file, the column and the first bad item (by its row of
    the file when ``rows`` is given, else by its image name)."""
    values = list(values)
    scores = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        i = bad[0]
        if rows is not None:
            raise InputError(f"{source}, row {rows[i]}: score {values[i]!r} in column {column!r} is not a number")
        raise InputError(f"{source}: {column} of {names[i]} is not a number ({values[i]!r})")
    far = far_scores(scores)
    if far.size:
        where = " and ".join(f"row {rows[i]}" if rows is not None else names[i] for i in far[:3])
        raise InputError(f"{source}, {where}: score {values[far[0]]!r} in column {column!r} is so far from the "
                         f"others (median {np.median(scores):g}) that scaling to [0, 1] would crush them together; "
                         "correct it or leave the image out")
    return scores


def far_scores(scores: np.ndarray, factor: float = CRUSH_FACTOR) -> np.ndarray:
    """Positions of the scores more than ``factor`` median absolute deviations from the median, farthest first
    (none when that deviation is 0)."""
    with np.errstate(over="ignore"):
        distance = np.abs(scores - np.median(scores))
    spread = np.median(distance)
    if not spread > 0:
        return np.array([], dtype=int)
    far = np.flatnonzero(distance > factor * spread)
    return far[np.argsort(-distance[far], kind="stable")]


def stem_ids(names: list[str], source: str | os.PathLike, rows: list[int] | None = None) -> list[str]:
    """Image ids (file names without extension) of ``names`` listed in ``source``, or InputError naming the first
    name listed twice or sharing its id with an earlier one (with their rows of the file when ``rows`` is given)."""
    ids: list[str] = []
    first: dict[str, int] = {}  # id -> position of its first name
    for i, name in enumerate(names):
        ids.append(Path(name).stem)
        j = first.setdefault(ids[-1], i)
        if j == i:
            continue
        where = f"{source}, row {rows[i]}" if rows is not None else str(source)
        if name == names[j]:
            first_at = f" (first at row {rows[j]})" if rows is not None else ""
            raise InputError(f"{where}: image name {name!r} listed twice{first_at}")
        earlier = f" (row {rows[j]})" if rows is not None else ""
        raise InputError(f"{where}: {name!r} and {names[j]!r}{earlier} share the image id {ids[-1]!r} "
                         "(the file name without its extension)")
    return ids


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
    paths = [index.get(Path(name).name.lower()) if index is not None else base / name for name in names]
    missing = [base / name for name, path in zip(names, paths) if path is None or not path.is_file()]
    if missing:
        raise InputError(f"{dataset} image not found: {missing[0]} (listed in {listed_in}; "
                         f"{len(missing)} missing in all)")
    return [str(path) for path in paths]


def build_meta(dataset: str, *, image_id: list[str], path: list[str], raw: np.ndarray, higher_is_better: bool,
               ref_id: list[str] | None = None, distortion: str | list[str] = "authentic",
               level: int | list[int] = 0, source: str | os.PathLike | None = None, column: str | None = None,
               **extra: list) -> pd.DataFrame:
    """The uniform meta table; ``ref_id`` defaults to ``image_id`` (authentic sets), ``extra`` adds columns.

    Errors name ``source`` (the label file; default: the dataset) and the score ``column`` when given.
    """
    source = source or dataset
    meta = pd.DataFrame({
        "image_id": image_id,
        "path": path,
        "score": normalise_scores(raw, higher_is_better, source, column),
        "score_raw": np.asarray(raw, dtype=np.float64),
        "ref_id": image_id if ref_id is None else ref_id,
        "distortion": distortion,
        "level": level,
        **extra,
    })
    dup = meta["image_id"][meta["image_id"].duplicated()]
    if len(dup):
        raise InputError(f"{source}: image id {dup.iloc[0]!r} occurs more than once")
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


FALLBACK_ENCODING = "cp1252"  # what spreadsheets on Windows write as "CSV"; a superset of Latin-1's letters


def _row(data: bytes, offset: int) -> int:
    """The line of ``data`` (1 = first) that holds byte ``offset``."""
    return data.count(b"\n", 0, offset) + 1


def decode_table(path: Path) -> str:
    """A CSV file's text: UTF-8 (a byte-order mark dropped), else Windows-1252 with a warning naming the first row
    that is not UTF-8. InputError naming the row and the byte when neither encoding reads it."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        first = err.start
    try:
        text = data.decode(FALLBACK_ENCODING)
    except UnicodeDecodeError as err:
        raise InputError(f"{path}, row {_row(data, err.start)}: byte 0x{data[err.start]:02x} is neither UTF-8 nor "
                         f"{FALLBACK_ENCODING}; save the table as UTF-8") from None
    log.warning("%s, row %d: byte 0x%02x is not UTF-8; the file is read as %s", path, _row(data, first), data[first],
                FALLBACK_ENCODING)
    return text


def read_label_table(path: Path, dataset: str, columns: list[str], **read_options) -> pd.DataFrame:
    """A .csv or .xlsx label file with the required ``columns`` (first is the image name, read as text).

    A CSV file is read as ``decode_table`` says. Indexed by row of the file (header = row 1); rows blank in every
    required column are skipped (spreadsheets may end in blank rows). InputError for an empty file, a table
    without data rows and a row without image name.
    """
    require_file(path, dataset)
    excel = path.suffix.lower() in (".xlsx", ".xls")
    reader = pd.read_excel if excel else partial(pd.read_csv, skip_blank_lines=False)  # blank lines keep their row
    source = path if excel else io.StringIO(decode_table(path))
    try:  # keep_default_na=False: report 'n/a' as written
        table = reader(source, **{"dtype": {columns[0]: str}, "keep_default_na": False, **read_options})
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file (no header, no rows)") from None
    except pd.errors.ParserError as err:
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        detail = f"line {fields[2]}: expected {fields[1]} fields, saw {fields[3]}" if fields else str(err).strip()
        raise InputError(f"{path}, {detail} (a comma inside a field needs quotes)") from None
    table.columns = [str(c).strip() for c in table.columns]
    require_columns(table, columns, path)
    table.index += 2  # the row of the file, the header being row 1
    blank = table[columns].map(lambda cell: pd.isna(cell) or not str(cell).strip())
    unnamed = blank[columns[0]] & ~blank.all(axis=1)
    if unnamed.any():
        raise InputError(f"{path}, row {unnamed.idxmax()}: no image name in column {columns[0]!r}")
    table = table[~blank.all(axis=1)]
    if table.empty:
        raise InputError(f"{path}: no data rows (only a header)")
    return table


def authentic_meta(dataset: str, *, names: list[str], folder: Path, raw: np.ndarray, listed_in: Path,
                   **extra: list) -> pd.DataFrame:
    """Meta table of an authentic set: id = file stem, ref_id = id, distortion 'authentic', higher raw = better."""
    return build_meta(dataset, image_id=stem_ids(names, listed_in), path=image_paths(folder, names, dataset, listed_in),
                      raw=raw, higher_is_better=True, source=listed_in, **extra)
