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


QUOTED = re.compile(r"`([a-z_0-9]+(?:\.[a-z_0-9]+)+): ([^`]+)`")  # `finetune.epochs: 9`


def paper_table() -> list[str]:
    """The rows of the README's table of the paper's configuration."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method (section 2) | `config/paper.yaml`"))
    rows = []
    for line in lines[start + 2:]:  # after the header and its rule
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_the_readmes_paper_table_quotes_the_resolved_configuration() -> None:
    """Every `key: value` the README's paper table quotes is config/paper.yaml's resolved value (over
    config/config.yaml, with the schema's defaults filled in)."""
    import yaml

    from qfm_iqm.settings import merged, validate

    config = merged(yaml.safe_load((REPO / "config/config.yaml").read_text()),
                    yaml.safe_load((REPO / "config/paper.yaml").read_text()))
    validate(config)
    quoted = [match for row in paper_table() for match in QUOTED.findall(row)]
    assert len(quoted) >= 25 and any(key == "student.matching.eps" for key, _ in quoted)
    for key, text in quoted:
        value = config
        for part in key.split("."):
            value = value[part]
        assert value == yaml.safe_load(text), f"README says `{key}: {text}`, the resolved configuration {value!r}"


def test_the_stage_table_lists_every_rule() -> None:
    rules = {m for path in [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")]
             for m in re.findall(r"^rule (\w+):", path.read_text(), re.M)}
    method = (DOCS / "method.md").read_text()
    table = method[method.index("## The stages"):method.index("## The method as built")]
    assert rules and not {r for r in rules if f"`{r}`" not in table}, "rules missing from docs/method.md's stage table"
