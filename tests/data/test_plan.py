"""The acquisition plan stated before a run (``qfm_iqm.data.plan``): what one command fetches, what needs a person,
and the sizes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from qfm_iqm.data.lock import DigestLock
from qfm_iqm.data.plan import plan_text
from qfm_iqm.data.registry import KINDS, PUBLISHED


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_plan_of_the_eight_datasets() -> None:
    todo = [(kind, kind, KINDS[kind].source) for kind in PUBLISHED]
    text = plan_text(todo, DigestLock("absent/datasets.lock.yaml"), "tofu")
    rows = {line.split()[0]: line for line in text.splitlines()[2:]}
    for kind in ("koniq10k", "kadid10k", "csiq", "tid2013", "livec"):
        assert rows[kind].endswith("  yes"), rows[kind]
    for kind in ("live", "spaq", "livefb"):
        assert rows[kind].endswith("no, by hand (below)"), rows[kind]
        assert f"  {kind}: {KINDS[kind].source.how_to_obtain}" in text
    assert "3.07 GB" in rows["kadid10k"] and "unknown" in rows["spaq"]
    known = sum(f.size or 0 for kind in PUBLISHED for f in KINDS[kind].source.files)
    assert f"{known / 1e9:.2f} GB+" in rows["total"]
    assert "size not published: spaq/SPAQ.zip, livefb/FLIVE_Database-master.zip" in text
    strict = plan_text(todo, DigestLock("absent/datasets.lock.yaml"), "strict")
    assert "yes" not in strict.replace("one command?", "")


def test_the_plan_uses_the_locked_sizes(tmp_path: Path) -> None:
    lock = DigestLock(tmp_path / "datasets.lock.yaml")
    lock.record("kadid10k", "kadid10k.zip", sha(b"k"), 2_500_000_000, None)
    text = plan_text([("kadid", "kadid10k", KINDS["kadid10k"].source)], lock, "strict")
    assert "2.50 GB" in text.splitlines()[2] and text.splitlines()[2].endswith("yes")
