"""The README's layout table matches the tree, folder by folder: every folder it names exists, and every folder of
the project (each package of clinicflow/, each top-level folder, each tests/ area) has its row."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Not the project's own layout: build output, and third-party files vendored as they are (named in their parent's row).
SKIPPED = {"out", "node_modules", "__pycache__", "vendor"}


def layout_rows() -> dict[str, str]:
    """First-column folders (``x/``) of the README's Layout table, with the row's text."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first, rest = line.split("|")[1], "|".join(line.split("|")[2:])
        for path in re.findall(r"`([^`]+/)`", first):
            rows[path] = rest
    return rows


def project_folders() -> set[str]:
    folders = {
        f"{p.name}/" for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SKIPPED
    }
    for package in ("clinicflow", "clinicflow_dev", "flows", "tasks", "blocks"):
        folders |= {
            f"{p.relative_to(ROOT).as_posix()}/"
            for p in (ROOT / package).rglob("*")
            if p.is_dir() and not SKIPPED & set(p.relative_to(ROOT).parts) and any(p.iterdir())
        }
    folders |= {"tests/unit/", "tests/support/"}
    return folders


def test_every_folder_the_table_names_exists() -> None:
    rows = layout_rows()
    assert len(rows) > 20, "the README's Layout table was not found"
    missing = sorted(p for p in rows if "<" not in p and not (ROOT / p).is_dir())
    assert missing == [], f"README layout names folders that do not exist: {missing}"


def test_every_folder_of_the_project_has_its_row() -> None:
    rows = layout_rows()
    absent = sorted(p for p in project_folders() if p not in rows)
    assert absent == [], f"folders missing from the README's Layout table: {absent}"


def test_every_integration_area_is_named() -> None:
    row = layout_rows()["tests/integration/<area>/"]
    areas = sorted(p.name for p in (ROOT / "tests" / "integration").iterdir() if p.is_dir() and p.name not in SKIPPED)
    unnamed = [a for a in areas if not re.search(rf"\b{re.escape(a)}\b", row)]
    assert unnamed == [], f"tests/integration areas not named in the README's Layout table: {unnamed}"
