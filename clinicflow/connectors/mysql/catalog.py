"""THE MySQL/MariaDB catalog reader: tables, columns, keys and indexes from information_schema.

One reader, one column type (:class:`CatalogColumn`), one table type (:class:`CatalogTable`). The subsystems
read the catalog here and project what they need: the replicator's columns
(``opendental/replication/replica_columns.py``), the loader's type map (``opendental/tables/typemap.py``
maps a :class:`CatalogColumn`), the schema analysis (``opendental/tables/source_schema.py``).

:func:`read_table` reads one table with three queries (four when a ``longtext`` column may be MariaDB's
JSON); :func:`read_catalog` reads a whole database with the same queries, once, not once per table.

Values are kept as the server gives them, with two normalisations: ``data_type`` and ``collation`` are
lower case (both servers print them so; analysis and replication relied on it). ``column_type`` keeps its
case (enum values), ``default`` is COLUMN_DEFAULT as written (MariaDB quotes string defaults, prints
``NULL`` for none and ``current_timestamp()``; MySQL gives the bare value, NULL and ``CURRENT_TIMESTAMP``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.mysql.sessions import catalog_int, catalog_name, catalog_text
from clinicflow.core.dbapi import Connection
from clinicflow.core.errors import SourceTableMissing
from clinicflow.core.sql import validate_table_name

# MySQL's integer column types (DATA_TYPE values).
INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})


@dataclass(frozen=True)
class CatalogColumn:
    """One column, as information_schema.COLUMNS (and CHECK_CONSTRAINTS, for MariaDB JSON) describes it."""

    name: str
    data_type: str  # DATA_TYPE, lower case: 'bigint', 'varchar', 'longtext'
    column_type: str  # COLUMN_TYPE as written: 'bigint(20) unsigned', "enum('A','b')"
    nullable: bool = True
    ordinal: int = 0  # ORDINAL_POSITION, from 1 (0: built by hand)
    default: str | None = None  # COLUMN_DEFAULT as the server writes it (see the module docstring)
    extra: str = ""  # EXTRA: 'auto_increment', 'on update current_timestamp()', 'VIRTUAL GENERATED'
    charset: str = ""  # CHARACTER_SET_NAME ('' but for text types)
    collation: str = ""  # COLLATION_NAME, lower case ('' but for text types)
    numeric_precision: int | None = None
    numeric_scale: int | None = None
    datetime_precision: int | None = None
    is_json: bool = False  # MariaDB: longtext with CHECK (json_valid(col))

    @property
    def is_bit(self) -> bool:
        return self.data_type == "bit"

    @property
    def is_integer(self) -> bool:
        return self.data_type in INTEGER_TYPES

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type.lower()

    @property
    def auto_increment(self) -> bool:
        return "auto_increment" in self.extra.lower()

    @property
    def on_update(self) -> bool:
        return "on update" in self.extra.lower()

    @property
    def generated(self) -> bool:
        """A virtual or stored generated column: the server computes it."""
        return "GENERATED" in self.extra.upper()


@dataclass(frozen=True)
class CatalogIndex:
    """A secondary index (the primary key is :attr:`CatalogTable.primary_key`)."""

    name: str
    columns: tuple[str, ...]
    prefix_lengths: tuple[int | None, ...]  # SUB_PART: None for the whole column
    unique: bool
    index_type: str = "BTREE"


@dataclass(frozen=True)
class CatalogTable:
    """One table (or view) of the catalog: columns in order, primary key in key order, indexes, size."""

    name: str
    columns: tuple[CatalogColumn, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[CatalogIndex, ...] = ()  # by INDEX_NAME as the server sorts them
    engine: str = ""  # '' for a view
    table_type: str = "BASE TABLE"  # TABLE_TYPE: 'BASE TABLE', 'VIEW', 'SYSTEM VERSIONED', 'SEQUENCE'
    table_rows: int = 0  # an estimate for InnoDB, exact for MyISAM/Aria
    data_length: int = 0
    avg_row_length: int = 0

    def column(self, name: str) -> CatalogColumn | None:
        """The column named ``name`` (MySQL column names compare without case)."""
        lowered = name.lower()
        for col in self.columns:
            if col.name.lower() == lowered:
                return col
        return None

    @property
    def unique_keys(self) -> tuple[tuple[str, ...], ...]:
        """The columns of each unique secondary index."""
        return tuple(index.columns for index in self.indexes if index.unique)

    @property
    def index_leading(self) -> frozenset[str]:
        """Columns that lead some index (the primary key included): MAX() over them is an index lookup."""
        return frozenset(self.primary_key[:1]) | {index.columns[0] for index in self.indexes if index.columns}

    @property
    def auto_increment_key(self) -> str | None:
        """The single auto-increment primary key column, if the key is one."""
        if len(self.primary_key) != 1:
            return None
        col = self.column(self.primary_key[0])
        return col.name if col is not None and col.auto_increment else None

    @property
    def exact_row_count(self) -> bool:
        """MyISAM/Aria keep an exact row count; InnoDB's TABLE_ROWS is an estimate."""
        return self.engine.lower() in ("myisam", "aria")


def read_table(conn: Connection, table: str, *, where: str = "source") -> CatalogTable:
    """``table`` of the connection's database; SourceTableMissing names it (in the ``where`` database)."""
    found = find_table(conn, table)
    if found is None:
        raise SourceTableMissing(f"table {table!r}: not found in the {where} database")
    return found


def find_table(conn: Connection, table: str) -> CatalogTable | None:
    """``table`` of the connection's database, or None when it has no such table.

    The name is matched by the server (``TABLE_NAME = %s``, so lower_case_table_names applies as it does to
    queries) and the result carries the name asked for.
    """
    validate_table_name(table)
    tables = _read(conn, "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", (table,), name=table)
    found = tables.get(table)
    return found if found is not None and found.columns else None


def read_catalog(conn: Connection, database: str | None = None) -> dict[str, CatalogTable]:
    """Every table and view of ``database`` (the connection's when None) by name, sorted: one pass, not per table."""
    if database is None:
        return _read(conn, "TABLE_SCHEMA = DATABASE()", ())
    return _read(conn, "TABLE_SCHEMA = %s", (database,))


def table_exists(conn: Connection, table: str) -> bool:
    """Whether the connection's database has ``table`` (a table or a view): one cheap query."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", (table,)
        )
        return cur.fetchone() is not None


_COLUMNS = (
    "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, "
    "EXTRA, CHARACTER_SET_NAME, COLLATION_NAME, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION "
    "FROM information_schema.COLUMNS WHERE {where} ORDER BY TABLE_NAME, ORDINAL_POSITION"
)
_INDEXES = (
    "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME, SUB_PART, NON_UNIQUE, INDEX_TYPE "
    "FROM information_schema.STATISTICS WHERE {where} ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
)
_TABLES = (
    "SELECT TABLE_NAME, ENGINE, TABLE_TYPE, TABLE_ROWS, DATA_LENGTH, AVG_ROW_LENGTH "
    "FROM information_schema.TABLES WHERE {where}"
)
# CHECK_CONSTRAINTS has TABLE_NAME on MariaDB >= 10.2 only (MySQL 8 has none, and a real JSON type).
_HAS_CHECKS = (
    "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'information_schema' "
    "AND TABLE_NAME = 'CHECK_CONSTRAINTS' AND COLUMN_NAME = 'TABLE_NAME'"
)
_CHECKS = "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE {where}"


def _read(conn: Connection, where: str, params: Sequence[Any], name: str | None = None) -> dict[str, CatalogTable]:
    """The catalog rows matching ``where``, grouped by table (all under ``name`` when given)."""

    def key(value: Any) -> str:
        return name if name is not None else catalog_name(value)

    with conn.cursor() as cur:
        cur.execute(_TABLES.format(where=where), params)
        table_rows = {key(row[0]): row for row in cur.fetchall()}
        cur.execute(_COLUMNS.format(where=where), params)
        column_rows = cur.fetchall()
        cur.execute(_INDEXES.format(where=where), params)
        index_rows = cur.fetchall()
        json_columns: set[tuple[str, str]] = set()
        if any(catalog_name(row[3]).lower() == "longtext" for row in column_rows):
            cur.execute(_HAS_CHECKS)
            if cur.fetchall():
                cur.execute(_CHECKS.format(where=where.replace("TABLE_SCHEMA", "CONSTRAINT_SCHEMA")), params)
                for table, clause in cur.fetchall():
                    column = json_check_column(catalog_text(clause) or "")
                    if column is not None:
                        json_columns.add((key(table), column.lower()))
    columns: dict[str, list[CatalogColumn]] = {}
    for table, *row in column_rows:
        columns.setdefault(key(table), []).append(_column(row, key(table), json_columns))
    primary: dict[str, tuple[str, ...]] = {}
    indexes: dict[str, dict[str, list[tuple[str, int | None, bool, str]]]] = {}
    for table, index_name, column_name, sub_part, non_unique, index_type in index_rows:
        parts = indexes.setdefault(key(table), {}).setdefault(catalog_name(index_name), [])
        parts.append(
            (
                catalog_name(column_name),
                catalog_int(sub_part),
                catalog_int(non_unique) == 0,
                catalog_text(index_type) or "BTREE",
            )
        )
    tables = {}
    for table, (_, engine, table_type, rows, data_length, avg_row_length) in sorted(table_rows.items()):
        secondary = []
        for index_name, parts in indexes.get(table, {}).items():
            if index_name == "PRIMARY":
                primary[table] = tuple(p[0] for p in parts)
                continue
            secondary.append(
                CatalogIndex(
                    index_name, tuple(p[0] for p in parts), tuple(p[1] for p in parts), parts[0][2], parts[0][3]
                )
            )
        tables[table] = CatalogTable(
            name=table,
            columns=tuple(columns.get(table, ())),
            primary_key=primary.get(table, ()),
            indexes=tuple(secondary),
            engine=catalog_text(engine) or "",
            table_type=catalog_text(table_type) or "",
            table_rows=catalog_int(rows) or 0,
            data_length=catalog_int(data_length) or 0,
            avg_row_length=catalog_int(avg_row_length) or 0,
        )
    return tables


def _column(row: Sequence[Any], table: str, json_columns: set[tuple[str, str]]) -> CatalogColumn:
    name, ordinal, data_type, column_type, nullable, default, extra, charset, collation, precision, scale, dt = row
    col_name = catalog_name(name)
    return CatalogColumn(
        name=col_name,
        data_type=catalog_name(data_type).lower(),
        column_type=catalog_name(column_type),
        nullable=catalog_name(nullable).upper() == "YES",
        ordinal=catalog_int(ordinal) or 0,
        default=catalog_text(default),
        extra=catalog_text(extra) or "",
        charset=catalog_text(charset) or "",
        collation=(catalog_text(collation) or "").lower(),
        numeric_precision=catalog_int(precision),
        numeric_scale=catalog_int(scale),
        datetime_precision=catalog_int(dt),
        is_json=(table, col_name.lower()) in json_columns,
    )


# MariaDB's JSON type is longtext with CHECK (json_valid(`name`)); the name is backtick-quoted, a backtick doubled.
_JSON_CHECK = re.compile(r"^\s*json_valid\s*\(\s*`((?:[^`]|``)+)`\s*\)\s*$", re.IGNORECASE)


def json_check_column(check_clause: str) -> str | None:
    """The column a MariaDB ``json_valid(`col`)`` check constraint is about, or None for any other check."""
    match = _JSON_CHECK.match(check_clause)
    return match.group(1).replace("``", "`") if match else None
