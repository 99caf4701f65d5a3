"""The MySQL → PostgreSQL type mapping, as the plain function it is (every row of the docs table)."""
from __future__ import annotations

import pytest

from clinicflow.opendental.tables.typemap import (
    Kind,
    SourceColumn,
    UnsupportedTypeError,
    is_compatible_change,
    map_column,
)


def col(data_type: str, column_type: str | None = None, **kw) -> SourceColumn:  # noqa: ANN003
    return SourceColumn("c", data_type, column_type or data_type, **kw)


def test_tinyint1_is_boolean_only_when_listed() -> None:
    flag = col("tinyint", "tinyint(1)")
    assert map_column(flag).pg_type == "smallint"
    as_boolean = map_column(flag, boolean=True)
    assert (as_boolean.pg_type, as_boolean.kind) == ("boolean", Kind.boolean_int)
    with pytest.raises(UnsupportedTypeError, match="boolean_columns"):
        map_column(col("varchar", "varchar(5)"), boolean=True)


def test_dates_are_nullable_in_postgres_because_zero_dates_become_null() -> None:
    assert map_column(col("date", nullable=False)).nullable is True
    assert map_column(col("bigint", "bigint(20)", nullable=False)).nullable is False


def test_unknown_types_fail_naming_column_and_type() -> None:
    with pytest.raises(UnsupportedTypeError, match=r"'c'.*'geometry'"):
        map_column(col("geometry"))


@pytest.mark.parametrize("old, new, ok", [
    ("integer", "bigint", True), ("smallint", "numeric(20)", True), ("bigint", "integer", False),
    ("real", "double precision", True), ("double precision", "real", False),
    ("numeric(12,4)", "numeric(14,4)", True), ("numeric(12,4)", "numeric(12,2)", False),
    ("bit varying(5)", "bit varying(10)", True), ("text", "bigint", False), ("smallint", "text", False),
    ("timestamp without time zone", "timestamp", True), ("integer", "numeric(10,0)", True),
])
def test_compatible_changes(old: str, new: str, ok: bool) -> None:
    assert is_compatible_change(old, new) is ok
