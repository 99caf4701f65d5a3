"""The MySQL → PostgreSQL type mapping, as the plain function it is (every row of the docs table)."""

from __future__ import annotations

import pytest

from clinicflow.connectors.mysql.catalog import CatalogColumn
from clinicflow.opendental.tables.typemap import (
    Kind,
    UnsupportedTypeError,
    carry_problem,
    is_compatible_change,
    map_column,
)


def col(data_type: str, column_type: str | None = None, **kw) -> CatalogColumn:
    return CatalogColumn("c", data_type, column_type or data_type, **kw)


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
    with pytest.raises(UnsupportedTypeError, match=r"'c'.*'vector\(3\)'"):
        map_column(col("vector", "vector(3)"))
    assert "'Emb'" in (carry_problem("Emb", "vector", "vector(3)") or "")
    assert carry_problem("Location", "point", "point") is None


def test_spatial_travels_as_wkb_and_timestamp_as_an_instant() -> None:
    point = map_column(col("point"))
    assert (point.pg_type, point.kind, point.carried_sql("`c`")) == ("bytea", Kind.binary, "ST_AsBinary(`c`)")
    assert map_column(col("blob")).carried_sql("`c`") == "`c`"
    stamp = map_column(col("timestamp", "timestamp(6)", datetime_precision=6))
    assert (stamp.pg_type, stamp.kind) == ("timestamptz(6)", Kind.instant)
    assert map_column(col("datetime")).pg_type == "timestamp"


def test_a_column_name_postgres_would_cut_fails_naming_it() -> None:
    name = "Über" + "x" * 60  # 65 bytes in UTF-8
    with pytest.raises(UnsupportedTypeError, match=r"'Überx+' has a name of 65 bytes"):
        map_column(CatalogColumn(name, "int", "int(11)"))
    assert map_column(CatalogColumn("x" * 63, "int", "int(11)")).name == "x" * 63


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        ("integer", "bigint", True),
        ("smallint", "numeric(20)", True),
        ("bigint", "integer", False),
        ("real", "double precision", True),
        ("double precision", "real", False),
        ("numeric(12,4)", "numeric(14,4)", True),
        ("numeric(12,4)", "numeric(12,2)", False),
        ("bit varying(5)", "bit varying(10)", True),
        ("text", "bigint", False),
        ("smallint", "text", False),
        ("timestamp without time zone", "timestamp", True),
        ("integer", "numeric(10,0)", True),
        ("timestamp(6) with time zone", "timestamptz(6)", True),
    ],
)
def test_compatible_changes(old: str, new: str, ok: bool) -> None:
    assert is_compatible_change(old, new) is ok
