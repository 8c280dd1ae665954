"""The lock file of downloaded dataset files: trust on first use, then every later download must match.

One YAML file, e.g. ``config/datasets.lock.yaml``, maps ``<kind>`` -> ``<file name>`` -> sha256, size, URL and
date. It is written when a file without a pinned checksum is first obtained, and is meant to be committed, so
that every later acquisition, here or on a colleague's machine, verifies the same bytes.
"""

from __future__ import annotations

import datetime
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from qfm_iqm.io import InputError, write_text

HEADER = """\
# Dataset files trusted on first use: the SHA-256 each had when this project first downloaded it.
# Commit this file. Every later download must match its entry; a mismatch is an error naming both digests.
# Written by the acquire_dataset jobs (qfm_iqm.data.lock); delete an entry only to trust a new file.
"""


@dataclass(frozen=True)
class LockEntry:
    sha256: str
    size: int
    url: str | None
    date: str  # ISO date of first use


class DigestLock:
    """The lock file at ``path`` (absent until the first entry is written)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def where(self, kind: str, name: str) -> str:
        """How an error names the entry: ``<lock file>: <kind>/<file name>``."""
        return f"{self.path}: {kind}/{name}"

    def get(self, kind: str, name: str) -> LockEntry | None:
        entry = self._read().get(kind, {}).get(name)
        if entry is None:
            return None
        try:
            return LockEntry(**entry)
        except TypeError as err:
            raise InputError(f"{self.where(kind, name)}: malformed entry {entry!r} ({err})") from err

    def record(self, kind: str, name: str, sha256: str, size: int, url: str | None) -> LockEntry:
        """Add the entry unless one exists; return the entry now in the file.

        Concurrent jobs serialise on an exclusive lock of the file's folder and re-read before writing; the
        file is replaced atomically, so a crash never leaves it half-written.
        """
        entry = LockEntry(sha256, size, url, datetime.date.today().isoformat())
        with self._exclusive():
            data = self._read()
            if existing := data.get(kind, {}).get(name):
                return LockEntry(**existing)
            data.setdefault(kind, {})[name] = asdict(entry)
            body = yaml.safe_dump({k: dict(sorted(v.items())) for k, v in sorted(data.items())}, sort_keys=False)
            write_text(HEADER + body, self.path)
        return entry

    def _read(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(f"{self.path}: not valid YAML ({err})") from err
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise InputError(f"{self.path}: expected <kind>: {{<file name>: {{sha256, size, url, date}}}}")
        return data

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
