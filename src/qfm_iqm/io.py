"""File helpers shared by every stage: atomic writes and image reading with clear errors."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps


class InputError(ValueError):
    """Bad user input (a file, a label, a config value); the message names the culprit."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it into place only if the block succeeds.

    A file replaces a file; with ``folder``, a folder replaces a folder (the old one is moved aside, and removed
    only once the new one is in place). A folder where a file is to go, or a file where a folder is to go, is an
    InputError naming it, raised before the block runs: nothing is deleted to make room, and nothing half-written
    is ever left at ``path``.
    """
    path = Path(path)
    check_target(path, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        check_target(path, folder)  # the block may have run for hours
        if folder and path.is_dir() and not path.is_symlink():
            old = tmp.with_name(f"{path.name}.old")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(old, path)
                raise
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def check_target(path: Path, folder: bool = False) -> None:
    """InputError naming ``path`` when something of the other kind is in the way: a folder where a file is to be
    written, or a file where a folder is (a symbolic link is replaced, never followed)."""
    if path.is_symlink() or not path.exists():
        return
    if path.is_dir() and not folder:
        raise InputError(f"{path} is a folder: a file cannot be written there (nothing was removed; move the folder "
                         "or choose another path)")
    if folder and not path.is_dir():
        raise InputError(f"{path} is a file: a folder cannot be written there (nothing was removed; move the file "
                         "or choose another path)")


def check_writable(path: str | os.PathLike) -> None:
    """InputError naming ``path`` unless a file can be written there: no folder in the way (``check_target``), and
    a temporary file can be made in its nearest existing folder (the check leaves nothing behind)."""
    path = Path(path)
    check_target(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {path}: {folder} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(prefix=f".{path.name}.", dir=folder):
            pass
    except OSError as err:
        raise InputError(f"cannot write {path}: {err.strerror or err} in {folder}") from None


def write_csv(df: pd.DataFrame, path: str | os.PathLike, float_format: str | None = None) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format)


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """An InputError naming ``path`` when the block cannot parse it (a truncated or overwritten ``.npz`` or
    checkpoint): numpy's and torch's own messages name neither the file nor the remedy, and advise loading
    pickles unsafely."""
    try:
        yield
    except OSError as err:
        if err.strerror is None:  # not a system error: a parse failure (zipfile's BadZipFile is not an OSError)
            raise
        raise InputError(f"{path} cannot be read ({err.strerror})") from None
    except (EOFError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise InputError(f"{path} is corrupt ({type(err).__name__} while parsing it); delete it and rerun the job "
                         "that makes it") from None


def sha256sum(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# P -> RGB warns when the palette transparency is per entry (bytes); La -> RGB is unsupported, La -> LA
# undoes its premultiplied alpha.
_VIA = {"P": "RGBA", "La": "LA"}


def to_rgb8(img: Image.Image) -> Image.Image:
    """Map a decoded image of any Pillow mode to 8-bit RGB.

    Single-band images of more than 8 bits become grey, rescaled (and rounded) thus:

    - 16-bit (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``): value * 255 / 65535.
    - 32-bit integer (``I``, which Pillow also uses for some 16-bit files): by the smallest nominal range that
      holds the data: max <= 255 as is, max <= 65535 as 16-bit, else as uint32 (value * 255 / (2**32 - 1));
      if any value is negative, min..max maps linearly to 0..255.
    - float (``F``): values within [0, 1] times 255, any other range min..max linearly to 0..255;
      NaN or infinity raises ValueError.

    A constant image that needs the min..max stretch becomes 0. Every other mode goes through Pillow's own
    conversion (LAB through ImageCms, D50 Lab to sRGB). Alpha and transparency are dropped, not composited:
    the straight colour stays, premultiplied alpha (``La``, ``RGBa``) is undone first.
    """
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return Image.fromarray(_grey8(np.asarray(img, dtype=np.float64), img.mode)).convert("RGB")
    if img.mode in _VIA:
        img = img.convert(_VIA[img.mode])
    rgb = img.convert("RGB")
    rgb.info.pop("transparency", None)
    return rgb


def _grey8(values: np.ndarray, mode: str) -> np.ndarray:
    """Rescale one band of mode ``I;16*``, ``I`` or ``F`` to uint8 by the rules of ``to_rgb8``."""
    if not np.isfinite(values).all():
        raise ValueError("non-finite pixel values")
    lo, hi = values.min(), values.max()
    if mode.startswith("I;16"):
        full = 65535
    elif mode == "F":
        full = 1 if lo >= 0 and hi <= 1 else None
    else:
        full = None if lo < 0 else 255 if hi <= 255 else 65535 if hi <= 65535 else 2**32 - 1
    if full is None:  # stretch min..max to 0..255
        values, full = values - lo, (hi - lo) or 1
    return np.rint(values * 255 / full).astype(np.uint8)


def upright_rgb(img: Image.Image) -> Image.Image:
    """An opened image as 8-bit RGB (``to_rgb8``), turned upright as its EXIF orientation says; ``img`` is
    left as it is."""
    return to_rgb8(ImageOps.exif_transpose(img))


_KINDS = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device",
          stat.S_ISBLK: "a device"}


def not_a_file(path: Path) -> str:
    """Why ``path``, which is not a regular file, cannot be read as one: a one-line message that names it."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"symbolic link loop: {path}"
        if path.is_symlink():
            return f"broken symbolic link: {path} -> {os.readlink(path)}"
        if err.errno == errno.ENOENT:
            return f"image not found: {path}"
        return f"cannot read {path} ({err.strerror})"
    kind = next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")
    return f"not an image file: {path} is {kind}"


_HEIF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
                b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


def _unsupported_format(path: Path) -> str:
    """What a file Pillow could not identify is, when its first bytes name a format Pillow does not decode here
    (HEIC / HEIF / AVIF, a TIFF layout such as float RGB); "" otherwise."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return ""
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return (f"{_HEIF_BRANDS[head[8:12]]}, which this Pillow does not decode (convert it to JPEG or PNG, or install "
                "pillow-heif)")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ("a TIFF that Pillow cannot identify: a layout it does not decode, such as float RGB (it reads 8- and "
                "16-bit TIFFs and one-band float ones; convert it, e.g. to a 16-bit PNG), or a damaged file")
    return ""


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image fully as 8-bit RGB (see ``to_rgb8``), upright as its EXIF orientation says.

    Any failure raises InputError with a one-line message naming the file. Images of more than
    ``Image.MAX_IMAGE_PIXELS`` pixels are refused ("image too large"): above twice that Pillow refuses them
    itself; between once and twice it only warns, and this reader turns that warning into the same refusal.
    Anything but a regular file (a folder, a FIFO, a broken or looping link) is refused without being opened.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(not_a_file(path))
    limit = Image.MAX_IMAGE_PIXELS or math.inf
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return upright_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        pixels = int(re.search(r"\((\d+) pixels\)", str(err))[1])  # Pillow refuses before handing back the image
    except (OSError, SyntaxError, ValueError) as err:
        reason = " ".join(str(err).split())
        unsupported = _unsupported_format(path) if isinstance(err, Image.UnidentifiedImageError) else ""
        if unsupported:
            raise InputError(f"unsupported image format: {path} is {unsupported}") from err
        raise InputError(f"corrupt or unreadable image: {path} ({reason})") from err
    raise InputError(f"image too large: {path} ({pixels / 1e6:.1f} Mpx; the limit is {limit / 1e6:.1f} Mpx)")
