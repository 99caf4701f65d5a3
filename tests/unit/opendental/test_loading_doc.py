"""docs/loading.md's type-mapping table is the code's mapping: every type it names maps as it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clinicflow.connectors.mysql.catalog import CatalogColumn
from clinicflow.opendental.tables.typemap import Kind, UnsupportedTypeError, map_column, normalize_pg_type

DOC = Path(__file__).resolve().parents[3] / "docs" / "loading.md"
_TYPE = re.compile(r"^([a-z0-9 ]+?)(?:\((\d+)(?:,(\d+))?\))?( unsigned)?$")


def _rows() -> list[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("| MySQL / MariaDB | PostgreSQL | values |") :]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((cells[0], cells[1]))
    return rows


def _column(spelling: str) -> CatalogColumn:
    match = _TYPE.match(spelling)
    assert match, spelling
    base, first, second, _unsigned = match.groups()
    precision = int(first) if first else None
    scale = int(second) if second else None
    kwargs = {}
    if base in ("decimal", "bit"):
        kwargs = {"numeric_precision": precision, "numeric_scale": scale}
    elif base in ("datetime", "timestamp", "time"):
        kwargs = {"datetime_precision": precision}
    return CatalogColumn("c", base.strip(), spelling, **kwargs)


def _ticks(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@pytest.mark.parametrize(("mysql_cell", "pg_cell"), _rows())
def test_each_row_of_the_docs_table_is_the_mapping(mysql_cell: str, pg_cell: str) -> None:
    if mysql_cell.startswith("anything else"):
        for spelling in _ticks(mysql_cell):
            with pytest.raises(UnsupportedTypeError, match=spelling):
                map_column(_column(spelling))
        return
    boolean = "boolean_columns" in mysql_cell
    # The MySQL spellings come before any explanation (" (MariaDB: ...)", " listed in ...").
    spellings = _ticks(re.split(r" \(| listed", mysql_cell)[0])
    targets = _ticks(pg_cell)
    assert spellings, (mysql_cell, pg_cell)
    assert targets, (mysql_cell, pg_cell)
    if len(targets) == 1:
        targets = targets * len(spellings)
    assert len(targets) == len(spellings), (mysql_cell, pg_cell)
    for spelling, target in zip(spellings, targets, strict=True):
        mapped = map_column(_column(spelling), boolean=boolean)
        assert normalize_pg_type(mapped.pg_type) == normalize_pg_type(target), (spelling, mapped.pg_type, target)


def test_the_docs_table_names_every_value_class() -> None:
    covered = set()
    for mysql_cell, _pg in _rows():
        if mysql_cell.startswith("anything else"):
            continue
        for spelling in _ticks(re.split(r" \(| listed", mysql_cell)[0]):
            covered.add(map_column(_column(spelling), boolean="boolean_columns" in mysql_cell).kind)
    assert covered == set(Kind)
