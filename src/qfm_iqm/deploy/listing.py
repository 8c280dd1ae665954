"""What ``qfm-iqm score`` scores: paths, folders and glob patterns expanded to files, each real file once.

Folders are walked by their real paths first; a link to a folder is followed only when its target was not walked
already and is not a folder above it (a loop), and a file reached through several names is scored under the
first. Each skipped link or repeated file is reported once, as a warning.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listed:
    """A path to score, or the ``error`` found while listing it (a folder that cannot be read, a pattern that
    matches nothing)."""

    path: Path
    error: str = ""


def expand(inputs: Sequence[str], recursive: bool) -> list[Listed]:
    """What to score, in order: a path as given (a missing file, a broken link or a FIFO gets its error row from
    the reader); a folder's entries other than subfolders (hidden ones skipped; with ``recursive`` its subfolders'
    too), sorted; a glob pattern's matches other than folders (``**`` with ``recursive``). Every entry is listed,
    images or not, so that a stray file gets its error row; so do a folder that cannot be read and a pattern that
    matches nothing. A file already listed under another name is left out, with a warning."""
    out: list[Listed] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            out += _Walk(recursive).listed(path)
        elif not path.exists() and not path.is_symlink() and glob.has_magic(item):
            out += _glob(item, recursive) or [Listed(path, f"no files match {item}")]
        else:
            out.append(Listed(path))
    return _once(out)


def _glob(pattern: str, recursive: bool) -> list[Listed]:
    """A pattern's matches other than folders, sorted. ``**`` (with ``recursive``) walks as ``_Walk`` does: Python's
    glob follows links to folders into loops."""
    if not (recursive and "**" in pattern):
        return [Listed(Path(p)) for p in sorted(glob.glob(pattern)) if not os.path.isdir(p)]
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    walk = _Walk(recursive=True)
    found = walk.listed(root) if root.is_dir() else []
    return [item for item in found if item.error or _match(item.path.relative_to(root).parts, parts[fixed:])]


def _match(parts: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    """Whether path ``parts`` match glob ``patterns`` segment by segment, ``**`` standing for any number of
    folders; as in glob, a wildcard does not match a leading dot."""
    if not patterns:
        return not parts
    if patterns[0] == "**":
        return any(_match(parts[i:], patterns[1:]) for i in range(len(parts) + 1))
    return (bool(parts) and fnmatch.fnmatchcase(parts[0], patterns[0])
            and (patterns[0].startswith(".") or not parts[0].startswith("."))
            and _match(parts[1:], patterns[1:]))


@dataclass
class _Walk:
    """One folder's files (its subfolders' too with ``recursive``): real folders first, then links to folders not
    walked yet; then one error row for each folder that could not be read."""

    recursive: bool
    seen: set[str] = field(default_factory=set)
    files: list[Path] = field(default_factory=list)
    unread: list[Listed] = field(default_factory=list)

    def listed(self, top: Path) -> list[Listed]:
        links: list[Path] = []
        self._walk(top, links)
        while links:
            link = links.pop(0)
            target = os.path.realpath(link)
            if _above(target, os.path.realpath(link.parent)):
                log.warning("skipped %s: a link to %s, a folder above it (a loop)", link, target)
            elif target in self.seen:
                log.warning("skipped %s: a link to %s, which is listed already", link, target)
            else:
                self._walk(link, links)
        return [Listed(p) for p in sorted(self.files)] + self.unread

    def _walk(self, top: Path, links: list[Path]) -> None:
        """Walk ``top`` without following links, which are queued in ``links``."""
        def failed(err: OSError) -> None:
            self.unread.append(Listed(Path(err.filename), f"cannot read folder {err.filename} ({err.strerror})"))

        for root, dirs, files in os.walk(top, onerror=failed):
            self.seen.add(os.path.realpath(root))
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if self.recursive else []
            links += [Path(root) / d for d in dirs if (Path(root) / d).is_symlink()]
            self.files += [Path(root) / name for name in files if not name.startswith(".")]


def _above(folder: str, inside: str) -> bool:
    """Whether real path ``folder`` is ``inside`` or a folder above it."""
    return inside == folder or inside.startswith(folder.rstrip(os.sep) + os.sep)


def _once(listed: list[Listed]) -> list[Listed]:
    """``listed`` with each existing file once, under its real path if listed so, else its first name; the other
    names are reported."""
    reals = [os.path.realpath(item.path) if not item.error and item.path.is_file() else None for item in listed]
    keep: dict[str, int] = {}
    for i, (item, real) in enumerate(zip(listed, reals)):
        if real is not None and (real not in keep or (os.path.abspath(item.path) == real
                                                      != os.path.abspath(listed[keep[real]].path))):
            keep[real] = i
    for i, (item, real) in enumerate(zip(listed, reals)):
        if real is not None and keep[real] != i:
            log.warning("skipped %s: the same file as %s", item.path, listed[keep[real]].path)
    return [item for i, (item, real) in enumerate(zip(listed, reals)) if real is None or keep[real] == i]
