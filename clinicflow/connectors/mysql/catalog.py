"""The MySQL catalog reader: columns, keys, indexes and engine of a table, from information_schema.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.mysql.sessions import catalog_text
from clinicflow.core.dbapi import Connection
from clinicflow.core.errors import SourceTableMissing
from clinicflow.core.sql import validate_table_name
from clinicflow.opendental.tables.typemap import (
    SourceColumn,
)


@dataclass(frozen=True)
class SourceIndex:
    name: str
    columns: tuple[str, ...]
    prefix_lengths: tuple[int | None, ...]
    unique: bool
    index_type: str = "BTREE"


@dataclass(frozen=True)
class SourceTable:
    """What information_schema says about one replicated table."""

    name: str
    columns: tuple[SourceColumn, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[SourceIndex, ...] = ()



def _int(value: Any) -> int | None:
    text = catalog_text(value)
    return None if text is None else int(text)


def describe_source(mysql_conn: Connection, table: str) -> SourceTable:
    """Columns, primary key and indexes of ``table`` in the connection's database."""
    validate_table_name(table)
    with mysql_conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, "
            "DATETIME_PRECISION, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table,))
        column_rows = cur.fetchall()
        if not column_rows:
            raise SourceTableMissing(f"table {table!r}: not found in the replication database")
        cur.execute(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = %s", (table,))
        json_columns = {name.lower() for r in cur.fetchall() if (name := json_check_column(catalog_text(r[0]) or ""))}
        cur.execute(
            "SELECT INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, SUB_PART, NON_UNIQUE, INDEX_TYPE "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
            "ORDER BY INDEX_NAME, SEQ_IN_INDEX", (table,))
        index_rows = cur.fetchall()
    columns = []
    for name, data_type, column_type, nullable, precision, scale, dt_precision, charset in column_rows:
        col_name = catalog_text(name) or ""
        is_json = col_name.lower() in json_columns
        columns.append(SourceColumn(
            name=col_name, data_type=catalog_text(data_type) or "", column_type=catalog_text(column_type) or "",
            nullable=catalog_text(nullable) == "YES", numeric_precision=_int(precision), numeric_scale=_int(scale),
            datetime_precision=_int(dt_precision), charset=catalog_text(charset), is_json=is_json))
    grouped: dict[str, list[tuple[str, int | None, bool, str]]] = {}
    for index_name, _seq, column_name, sub_part, non_unique, index_type in index_rows:
        grouped.setdefault(catalog_text(index_name) or "", []).append(
            (catalog_text(column_name) or "", _int(sub_part), _int(non_unique) == 0,
             catalog_text(index_type) or "BTREE"))
    primary: tuple[str, ...] = ()
    indexes = []
    for index_name, parts in grouped.items():
        if index_name == "PRIMARY":
            primary = tuple(p[0] for p in parts)
            continue
        indexes.append(SourceIndex(index_name, tuple(p[0] for p in parts), tuple(p[1] for p in parts),
                                   parts[0][2], parts[0][3]))
    return SourceTable(table, tuple(columns), primary, tuple(indexes))


# MariaDB's JSON type is longtext with CHECK (json_valid(`name`)); the name is backtick-quoted, a backtick doubled.
_JSON_CHECK = re.compile(r"^\s*json_valid\s*\(\s*`((?:[^`]|``)+)`\s*\)\s*$", re.IGNORECASE)


def json_check_column(check_clause: str) -> str | None:
    """The column a MariaDB ``json_valid(`col`)`` check constraint is about, or None for any other check."""
    match = _JSON_CHECK.match(check_clause)
    return match.group(1).replace("``", "`") if match else None


def source_engine(mysql_conn: Connection, table: str) -> str:
    """The storage engine of ``table`` in the connection's database (``''`` when it has none, as a view)."""
    with mysql_conn.cursor() as cur:
        cur.execute("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                    (table,))
        row = cur.fetchone()
    return (catalog_text(row[0]) if row else None) or ""
