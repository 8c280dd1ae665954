"""Where each dataset comes from: official files, the layout that proves they are present, licence."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RemoteFile:
    """One file the official source serves.

    ``sha256`` is recorded only from an authoritative source. Without it, a file of a dataset that is
    ``served_openly`` is downloaded on first use and its digest locked (``qfm_iqm.data.lock``); any other
    file must be obtained by hand (manual mode).
    """

    name: str  # the file's name as served, and its name under data/<dataset>/downloads/
    url: str | None  # official address; None where a licence form or a drive link stands between
    sha256: str | None = None
    extract: bool = True  # an archive to unpack into data/<dataset>/raw/
    size: int | None = None  # approximate bytes as served, for stating disk and time; None: not published


@dataclass(frozen=True)
class DatasetSource:
    """How to obtain one dataset in its official layout."""

    homepage: str
    files: tuple[RemoteFile, ...]
    layout: tuple[str, ...]  # paths relative to the dataset root that must exist once acquired
    subdir: str = ""  # the dataset root inside data/<dataset>/raw/ after extraction
    licence: str = ""
    redistributable: bool = False  # may a prepared copy be pushed to a shared (non-local) remote?
    how_to_obtain: str = ""  # e.g. "fill in the request form at <homepage>"
    notice: str = ""  # the copyright notice that must travel with copies and models, relative to the dataset root
    citation: str = ""  # how the dataset asks to be cited
    served_openly: bool = False  # every file is at its URL without a form: trust on first use may download it
    unpacked_size: int | None = None  # approximate bytes of the unpacked official layout; None: not published


def with_files(source: DatasetSource, files: list[dict] | None) -> DatasetSource:
    """``source`` with configured ``files`` (a mirror, or pinned checksums) instead of its own; a file named as an
    official one keeps its recorded size."""
    if not files:
        return source
    sizes = {f.name: f.size for f in source.files}
    return replace(source, files=tuple(RemoteFile(**{"size": sizes.get(f["name"]), **f}) for f in files))
