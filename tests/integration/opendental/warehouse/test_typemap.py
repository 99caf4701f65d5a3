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


@pytest.mark.parametrize("source, pg_type, kind", [
    (col("bigint", "bigint(20)"), "bigint", Kind.integer),
    (col("bigint", "bigint(20) unsigned"), "numeric(20)", Kind.integer),
    (col("int", "int(11)"), "integer", Kind.integer),
    (col("int", "int(10) unsigned"), "bigint", Kind.integer),
    (col("mediumint", "mediumint(8) unsigned"), "integer", Kind.integer),
    (col("smallint", "smallint(6)"), "smallint", Kind.integer),
    (col("smallint", "smallint(5) unsigned"), "integer", Kind.integer),
    (col("tinyint", "tinyint(4)"), "smallint", Kind.integer),
    (col("tinyint", "tinyint(3) unsigned"), "smallint", Kind.integer),
    (col("tinyint", "tinyint(1)"), "smallint", Kind.integer),
    (col("year", "year(4)"), "smallint", Kind.integer),
    (col("double"), "double precision", Kind.double),
    (col("float"), "real", Kind.float),
    (col("decimal", "decimal(12,4)", numeric_precision=12, numeric_scale=4), "numeric(12,4)", Kind.decimal),
    (col("date"), "date", Kind.date),
    (col("datetime"), "timestamp", Kind.datetime),
    (col("datetime", "datetime(3)", datetime_precision=3), "timestamp(3)", Kind.datetime),
    (col("timestamp"), "timestamp", Kind.datetime),
    (col("time"), "interval", Kind.time),
    (col("varchar", "varchar(255)"), "text", Kind.text),
    (col("char", "char(8)"), "text", Kind.text),
    (col("text"), "text", Kind.text),
    (col("mediumtext"), "text", Kind.text),
    (col("longtext"), "text", Kind.text),
    (col("enum", "enum('a','b')"), "text", Kind.text),
    (col("set", "set('x','y')"), "text", Kind.text),
    (col("longtext", is_json=True), "jsonb", Kind.json),
    (col("blob"), "bytea", Kind.binary),
    (col("longblob"), "bytea", Kind.binary),
    (col("varbinary", "varbinary(64)"), "bytea", Kind.binary),
    (col("binary", "binary(16)"), "bytea", Kind.binary),
    (col("bit", "bit(1)", numeric_precision=1), "boolean", Kind.bit1),
    (col("bit", "bit(10)", numeric_precision=10), "bit varying(10)", Kind.bits),
])
def test_mapping(source: SourceColumn, pg_type: str, kind: Kind) -> None:
    mapped = map_column(source)
    assert (mapped.pg_type, mapped.kind) == (pg_type, kind)


def test_tinyint1_is_boolean_only_when_listed() -> None:
    flag = col("tinyint", "tinyint(1)")
    assert map_column(flag).pg_type == "smallint"
    assert (map_column(flag, boolean=True).pg_type, map_column(flag, boolean=True).kind) == ("boolean", Kind.boolean_int)
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
