"""The documentation holds together: a one-screen README that links every page under docs/, and no relative
link in the README or docs/ that points at a missing file."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"

# [text](target) or [text](target "title"); images too. Code spans and fenced blocks are dropped first.
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")


def links(page: Path) -> list[str]:
    """The link targets of a Markdown page, outside code."""
    text = CODE.sub("", FENCE.sub("", page.read_text()))
    return LINK.findall(text)


def relative_targets(page: Path) -> list[tuple[str, Path]]:
    """Each relative link of ``page`` (no scheme, not a pure #anchor) with the file it resolves to."""
    out = []
    for target in links(page):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s), mailto, ...; an anchor on the same page
        path = target.split("#", 1)[0].split("?", 1)[0]
        out.append((target, (page.parent / path).resolve()))
    return out


def pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_the_readme_fits_on_one_screen() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_links_every_docs_page() -> None:
    linked = {resolved for _, resolved in relative_targets(README)}
    top = sorted(DOCS.glob("*.md"))
    assert top, "no pages under docs/"
    missing = [p.relative_to(REPO).as_posix() for p in top if p.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


def test_every_relative_link_resolves() -> None:
    broken = [f"{page.relative_to(REPO).as_posix()}: {target}"
              for page in pages() for target, resolved in relative_targets(page) if not resolved.exists()]
    assert not broken, "links to missing files:\n" + "\n".join(broken)
