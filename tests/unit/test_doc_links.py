"""Every relative link in README.md and docs/*.md points at a file that exists, and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 250
# [text](target) outside code spans; the target ends at a space (title) or the closing parenthesis
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def local_targets(doc: Path) -> list[str]:
    """Link targets of ``doc`` that name a local file (no scheme, not a bare anchor), code blocks skipped."""
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_every_local_link_resolves() -> None:
    broken = [
        f"{doc.relative_to(ROOT)} -> {target}"
        for doc in documents()
        for target in local_targets(doc)
        if not (doc.parent / target).exists()
    ]
    assert broken == [], f"links to files that do not exist: {broken}"


def test_the_link_checker_sees_links(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("[a](docs/a.md#s) [b](https://x.org) [c](#top) `[d](e.md)`\n```\n[f](g.md)\n```\n")
    assert local_targets(doc) == ["docs/a.md"]
    assert any(local_targets(d) for d in documents())


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}: move detail into docs/"


def test_more_documentation_lists_every_doc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## More documentation\n", 1)[1]
    unlisted = [d.name for d in sorted((ROOT / "docs").glob("*.md")) if f"(docs/{d.name})" not in section]
    assert unlisted == [], f"docs not listed in the README's More documentation table: {unlisted}"
