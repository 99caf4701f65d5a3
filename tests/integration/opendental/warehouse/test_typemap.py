"""The MySQL → PostgreSQL type mapping, as the plain function it is (every row of the docs table)."""

from __future__ import annotations

import pytest

from clinicflow.connectors.mysql.catalog import CatalogColumn
from clinicflow.opendental.tables.typemap import (
    Kind,
    map_column,
)
from tests.unit.opendental.test_typemap import col


@pytest.mark.parametrize(
    ("source", "pg_type", "kind"),
    [
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
        (col("timestamp"), "timestamptz", Kind.instant),
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
    ],
)
def test_mapping(source: CatalogColumn, pg_type: str, kind: Kind) -> None:
    mapped = map_column(source)
    assert (mapped.pg_type, mapped.kind) == (pg_type, kind)
