"""Obtain a dataset's official files: verified resumable downloads, safe extraction, manual-mode instructions."""

from __future__ import annotations

import http.client
import io
import logging
import lzma
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import TextIO

import py7zr
import rarfile
from tqdm import tqdm

from qfm_iqm.data.lock import DigestLock
from qfm_iqm.data.plan import POLICIES, automatic, needs
from qfm_iqm.data.sources import DatasetSource, RemoteFile
from qfm_iqm.io import InputError, atomic_path, sha256sum

log = logging.getLogger(__name__)
ARCHIVE_SUFFIXES = {
    ".zip": "zip",
    ".tar": "tar",
    ".tar.gz": "tar",
    ".tgz": "tar",
    ".tar.bz2": "tar",
    ".tar.xz": "tar",
    ".7z": "7z",
    ".rar": "rar",
}
# Worth another try: the connection broke, timed out or the server had a passing problem.
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# What a damaged archive raises while being read.
_CORRUPT = (
    zipfile.BadZipFile,
    tarfile.TarError,
    py7zr.exceptions.ArchiveError,
    rarfile.Error,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
)


class ManualDownloadRequired(InputError):
    """Some official files cannot be fetched automatically; the message says what to put where."""


def fetch(
    url: str, dest: Path, sha256: str | None, *, timeout: float = 60.0, retries: int = 5, chunk_size: int = 1 << 20
) -> str:
    """Download ``url`` to ``dest``, verify its SHA-256 and return it; resumable (``<dest>.part``) and atomic.

    ``sha256=None`` trusts what arrives (first use; the caller locks the digest). An existing ``dest`` with the
    right digest (or any, when none is expected) is kept as is. Broken connections are retried up to
    ``retries`` times, each resuming where the last stopped.
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        actual = sha256sum(dest)
        if expected in (None, actual):
            return actual
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _stream(url, part, timeout, chunk_size)
            break
        except urllib.error.HTTPError as err:
            if err.code == 416 and part.exists():  # nothing left to send: .part is the whole file, or garbage
                if expected and sha256sum(part) == expected:
                    break
                part.unlink()
                continue
            if err.code not in _RETRY_STATUS or failures >= retries:
                raise InputError(f"download failed: {url} answered HTTP {err.code} {err.reason}") from err
            failures += 1
            time.sleep(min(2.0**failures, 30.0))
        except _TRANSIENT as err:
            if failures >= retries:
                raise InputError(f"download failed after {retries} retries: {url} ({err})") from err
            failures += 1
            progressed = part.exists() and part.stat().st_size > before
            time.sleep(0.0 if progressed else min(2.0**failures, 30.0))
    actual = sha256sum(part)
    if expected and actual != expected:
        part.unlink()
        raise InputError(
            f"checksum mismatch for {url} (downloading to {dest}): expected sha256 {expected}, got {actual}; "
            "the download was deleted"
        )
    os.replace(part, dest)
    return actual


def _stream(url: str, part: Path, timeout: float, chunk_size: int) -> None:
    """Append the rest of ``url`` to ``part`` (from byte 0 if the server cannot resume); raise if cut short."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "qfm-iqm-fetch"} | ({"Range": f"bytes={offset}-"} if offset else {})
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        if response.status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                part.unlink()
                raise ConnectionError(f"server resumed at {response.headers.get('Content-Range')!r}, not byte {offset}")
        else:
            offset = 0  # Range ignored: the whole file follows
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        total = offset + remaining if remaining is not None else None
        with (
            open(part, "ab" if offset else "wb") as fh,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                **_progress_output(),
            ) as bar,
        ):
            received = 0
            while chunk := response.read(chunk_size):
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if remaining is not None and received < remaining:
        raise ConnectionError(f"connection closed after {offset + received} of {total} bytes")


class _Lines(io.TextIOBase):
    """A progress bar's output for a log file: every redraw on a line of its own, instead of after a carriage return."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if line := text.replace("\r", "").strip():
            self.stream.write(line + "\n")
            self.stream.flush()
        return len(text)


def _progress_output() -> dict:
    """tqdm settings: a live bar on a terminal; in a job's log, one line with size, rate and ETA every 10 s."""
    if sys.stderr.isatty():
        return {}
    return {"file": _Lines(sys.stderr), "mininterval": 10.0, "ascii": True, "ncols": 100}


def extract(archive: Path, dest: Path) -> None:
    """Unpack a zip, tar(.gz/.bz2/.xz), 7z or rar archive into ``dest``, merging with what is there.

    Everything is unpacked beside ``dest`` first, so a corrupt or unsafe archive leaves ``dest`` untouched;
    members that would land outside ``dest`` are refused.
    """
    archive, dest = Path(archive), Path(dest)
    kind = next((k for suffix, k in ARCHIVE_SUFFIXES.items() if archive.name.lower().endswith(suffix)), None)
    if kind is None:
        raise InputError(f"cannot extract {archive}: unknown archive type (supported: {', '.join(ARCHIVE_SUFFIXES)})")
    if not archive.is_file():
        raise InputError(f"archive not found: {archive}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract.", dir=dest.parent))
    try:
        try:
            _unpack(kind, archive, tmp)
        except _CORRUPT as err:
            raise InputError(f"cannot extract {archive}: corrupt or unreadable archive ({err})") from err
        _check_links(archive, tmp)
        dest.mkdir(exist_ok=True)
        _merge(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unpack(kind: str, archive: Path, out: Path) -> None:
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            _check_names(archive, zf.namelist())
            zf.extractall(out)
    elif kind == "tar":
        with tarfile.open(archive) as tf:
            _check_names(archive, tf.getnames())
            tf.extractall(out, filter="data")
    elif kind == "7z":
        with py7zr.SevenZipFile(archive) as sz:
            _check_names(archive, sz.getnames())
            sz.extractall(out)
    else:
        with rarfile.RarFile(archive) as rf:  # parses the headers in Python; unar does the unpacking
            _check_names(archive, rf.namelist())
        if shutil.which("unar") is None:
            raise InputError(
                f"cannot extract {archive}: the `unar` tool is missing (apt install unar), or extract it by hand"
            )
        cmd = [
            "unar",
            "-quiet",
            "-force-overwrite",
            "-no-directory",
            "-no-recursion",
            "-password",
            "",
            "-output-directory",
            str(out),
            str(archive),
        ]
        done = subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode:
            raise InputError(f"cannot extract {archive}: unar failed ({(done.stderr or done.stdout).strip()})")


def _check_names(archive: Path, names: list[str]) -> None:
    for name in names:
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts:
            raise InputError(f"refusing to extract {archive}: member {name!r} would be written outside the target")


def _check_links(archive: Path, root: Path) -> None:
    """Refuse symlinks that were unpacked pointing outside ``root``."""
    top = root.resolve()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if path.is_symlink() and not path.resolve().is_relative_to(top):
                raise InputError(
                    f"refusing to extract {archive}: member {path.relative_to(root)} links outside the target"
                )


def _merge(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into the existing directory ``dst``; same-named entries are replaced, folders merged."""
    for entry in src.iterdir():
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _merge(entry, target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        os.replace(entry, target)


def acquire(
    dataset: str,
    source: DatasetSource,
    raw_dir: Path,
    downloads_dir: Path,
    root: Path,
    *,
    lock: DigestLock | None = None,
    kind: str | None = None,
    policy: str = "tofu",
) -> dict[str, str]:
    """Make ``dataset`` present in its official layout at ``root``.

    Nothing happens if the layout is already there. Otherwise each official file is taken from
    ``downloads_dir`` or downloaded, then extracted into ``raw_dir``. A file is verified against its pinned
    SHA-256 (the source record's, else the ``lock`` entry of ``kind``/name). Without one, a file of a dataset
    served openly is downloaded under ``policy="tofu"`` and its digest written to the lock; so is a file
    put in ``downloads_dir`` by hand. Files that can be obtained only by hand raise ManualDownloadRequired,
    saying what to do. Returns the SHA-256 of every file used (nothing when the layout was already there).
    """
    raw_dir, downloads_dir, root = Path(raw_dir), Path(downloads_dir), Path(root)
    kind = kind or dataset
    if policy not in POLICIES:
        raise InputError(f"{dataset}: unknown acquire.policy {policy!r} (expected one of {', '.join(POLICIES)})")
    if not _missing(root, source.layout):
        log.info("%s: the official layout is already at %s; nothing to acquire", dataset, root)
        return {}
    present = frozenset(f.name for f in source.files if (downloads_dir / f.name).exists())
    log.info("%s: acquiring %s into %s: %s; %s free there", dataset, ", ".join(f.name for f in source.files),
             raw_dir, needs(source, kind, lock, present).describe(), _free(raw_dir))
    absent, digests = [], {}
    for f in source.files:
        path = downloads_dir / f.name
        pinned, where = _pin(dataset, kind, f, lock)
        if path.exists():
            digests[f.name] = actual = sha256sum(path)
            if pinned and actual != pinned:
                raise InputError(
                    f"{dataset}: {path} has sha256 {actual} but {where} has {pinned}; "
                    "replace it with the official file (it was left in place)"
                )
            if not pinned and lock:
                _lock(lock, kind, f, path, actual, "put there by hand")
        elif automatic(f, source, pinned, policy if lock else "strict"):
            try:
                digests[f.name] = digest = fetch(f.url, path, pinned)
            except InputError as err:
                hint = "" if f.sha256 or not pinned else f" ({where}; delete it only if the publisher changed the file)"
                raise InputError(
                    f"{dataset}: {err}{hint}; alternatively download it yourself to {path.resolve()} and "
                    "rerun the same command"
                ) from err
            if not pinned:
                _lock(lock, kind, f, path, digest, "downloaded, trusted on first use")
        else:
            absent.append(f)
    if absent:
        raise ManualDownloadRequired(_manual_message(dataset, source, absent, downloads_dir, root, policy))
    for f in source.files:
        path = downloads_dir / f.name
        if f.extract:
            extract(path, raw_dir)
        else:
            with atomic_path(raw_dir / f.name) as tmp:
                shutil.copyfile(path, tmp)
    if still := _missing(root, source.layout):
        raise InputError(
            f"{dataset}: after extracting {', '.join(f.name for f in source.files)} from {downloads_dir}, "
            f"these official paths are still missing: {', '.join(str(p) for p in still)}; "
            "are these the official files?"
        )
    return digests


def _pin(dataset: str, kind: str, f: RemoteFile, lock: DigestLock | None) -> tuple[str | None, str]:
    """The digest ``f`` must have and where it is pinned: the source record (or config), else the lock."""
    entry = lock.get(kind, f.name) if lock else None
    record = f.sha256.lower() if f.sha256 else None
    if record and entry and entry.sha256 != record:
        raise InputError(
            f"{dataset}: the config pins sha256 {record} for {f.name}, but the lock entry {lock.where(kind, f.name)} "
            f"has {entry.sha256}; remove one of them"
        )
    if record:
        return record, f"the official {f.name}"
    if entry:
        return entry.sha256, f"the lock entry {lock.where(kind, f.name)}"
    return None, ""


def _lock(lock: DigestLock, kind: str, f: RemoteFile, path: Path, digest: str, how: str) -> None:
    entry = lock.record(kind, f.name, digest, path.stat().st_size, f.url)
    if entry.sha256 != digest:  # another job locked a different file meanwhile
        raise InputError(f"{path} has sha256 {digest} but the lock entry {lock.where(kind, f.name)} has {entry.sha256}")
    log.info("%s (%s): sha256 %s, %d bytes; locked in %s", f.name, how, digest, entry.size, lock.path)


def _free(folder: Path) -> str:
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    return f"{shutil.disk_usage(existing).free / 1e9:.1f} GB"


def _missing(root: Path, layout: tuple[str, ...]) -> list[Path]:
    return [root / p for p in layout if not (root / p).exists()]


def _manual_message(
    dataset: str, source: DatasetSource, absent: list[RemoteFile], downloads_dir: Path, root: Path, policy: str
) -> str:
    lines = [f"{dataset}: these official files must be obtained by hand:"]
    lines += [f"  - {f.name}  " + (f"from {f.url}" if f.url else f"via {source.homepage}") for f in absent]
    if source.how_to_obtain:
        lines.append(f"  ({source.how_to_obtain})")
    root = root.resolve()
    proof = ", ".join(str(root / p) for p in source.layout[:3]) + (", ..." if len(source.layout) > 3 else "")
    lines += [
        f"Put them, named exactly as above, in {downloads_dir.resolve()}",
        f"or put the already-extracted official layout under {root} instead, so that {proof} exist;",
        "then rerun the same command.",
    ]
    if source.served_openly and policy == "strict":
        lines += [
            "(acquire.policy is strict: a file without a pinned sha256 is not downloaded; set acquire.policy: tofu",
            f"to download it and lock its digest, or set its sha256 under the config key datasets.{dataset}.files.)",
        ]
    else:
        lines += [
            "(A file without an authoritative sha256 is never downloaded automatically; to enable the download,",
            f"set its sha256 under the config key datasets.{dataset}.files.)",
        ]
    return "\n".join(lines)
