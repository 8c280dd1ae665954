"""What acquiring datasets will take, stated before the work starts: which files download themselves, and
how much disk and time they need (sizes from the source records, exact ones from the lock once known)."""

from __future__ import annotations

from dataclasses import dataclass

from qfm_iqm.data.lock import DigestLock
from qfm_iqm.data.sources import DatasetSource, RemoteFile

POLICIES = ("tofu", "strict")  # trust on first use, or pinned checksums only
RATE = 10e6  # bytes/s the time estimate assumes


def automatic(f: RemoteFile, source: DatasetSource, pinned: str | None, policy: str) -> bool:
    """Whether the workflow downloads ``f`` itself: it has a URL, and a digest to check (``pinned``: from the
    config or the lock) or, under ``tofu``, a dataset served openly whose digest is locked on first use."""
    return bool(f.url) and bool(pinned or (source.served_openly and policy == "tofu"))


@dataclass(frozen=True)
class Needs:
    """Bytes to download and to unpack; ``unknown`` names the files whose size is not published."""

    download: int
    unpacked: int | None
    unknown: tuple[str, ...] = ()

    def __add__(self, other: Needs) -> Needs:
        unpacked = (self.unpacked or 0) + (other.unpacked or 0)  # a total: what is known, "+" marks the rest
        return Needs(self.download + other.download, unpacked, self.unknown + other.unknown)

    def describe(self) -> str:
        text = f"download about {_gb(self.download)} (about {_duration(self.download / RATE)} at 10 MB/s)"
        text += f", unpacked about {_gb(self.unpacked)}" if self.unpacked is not None else ", unpacked size unknown"
        if self.unknown:
            text += f"; not counted, size not published: {', '.join(self.unknown)}"
        return text


def needs(source: DatasetSource, kind: str, lock: DigestLock | None = None, present: frozenset[str] = frozenset()) -> Needs:
    """What acquiring ``source`` needs, less the files already ``present`` in its downloads folder."""
    sizes = {}
    for f in source.files:
        if f.name not in present:
            entry = lock.get(kind, f.name) if lock else None
            sizes[f.name] = entry.size if entry else f.size
    unknown = tuple(f"{kind}/{name}" for name, size in sizes.items() if size is None)
    return Needs(sum(s for s in sizes.values() if s), source.unpacked_size, unknown)


def one_command(source: DatasetSource, kind: str, lock: DigestLock | None, policy: str) -> str:
    """``yes`` when every file downloads itself, else what a person must do."""
    if all(automatic(f, source, f.sha256 or (lock and lock.get(kind, f.name)), policy) for f in source.files):
        return "yes"
    if source.served_openly:
        return "no: acquire.policy is strict and a file has no pinned sha256 (pin it, or use tofu)"
    return f"no: {source.how_to_obtain}"


def plan_text(datasets: list[tuple[str, str, DatasetSource]], lock: DigestLock, policy: str) -> str:
    """A table of the ``(name, kind, source)`` still to acquire: sizes, whether it takes no manual step, total."""
    lines = [f"Datasets to acquire (acquire.policy: {policy}; sizes approximate until locked in {lock.path}):",
             f"  {'dataset':<12}{'download':>10}{'unpacked':>10}  one command?"]
    total, manual = Needs(0, 0), []
    for name, kind, source in datasets:
        need = needs(source, kind, lock)
        total += need
        answer = one_command(source, kind, lock, policy)
        if answer != "yes":
            manual.append(f"  {name}: {answer.removeprefix('no: ')}")
        lines.append(f"  {name:<12}{_size(need, need.download):>10}{_size(need, need.unpacked):>10}  "
                     + ("yes" if answer == "yes" else "no, by hand (below)"))
    lines.append(f"  {'total':<12}{_size(total, total.download):>10}{_size(total, total.unpacked):>10}  "
                 f"about {_duration(total.download / RATE)} of downloading at 10 MB/s")
    if total.unknown:
        lines.append(f"  (+: at least; size not published: {', '.join(total.unknown)})")
    return "\n".join(lines + manual)


def _size(need: Needs, n: int | None) -> str:
    if n is None or (need.unknown and n == need.download == 0):
        return "unknown"
    return _gb(n) + ("+" if need.unknown else "")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{max(1, round(seconds / 60))} min"
