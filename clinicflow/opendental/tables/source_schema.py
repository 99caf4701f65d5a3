"""The live source's schema for analysis: tables, columns, keys and sizes from information_schema.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    data_type: str  # e.g. "timestamp"
    column_type: str  # e.g. "bigint(20) unsigned"
    nullable: bool
    extra: str  # e.g. "auto_increment", "on update current_timestamp()"

    @property
    def on_update(self) -> bool:
        return "on update" in self.extra.lower()

    @property
    def auto_increment(self) -> bool:
        return "auto_increment" in self.extra.lower()

    @property
    def definition(self) -> str:
        """Type, nullability and the attributes that matter for copying, as recorded in tables.yml."""
        parts = [self.column_type.lower()]
        if not self.nullable:
            parts.append("not null")
        if self.auto_increment:
            parts.append("auto_increment")
        if self.on_update:
            parts.append("on update current_timestamp()")
        return " ".join(parts)


@dataclass(frozen=True)
class TableInfo:
    name: str
    engine: str
    table_rows: int
    data_length: int
    avg_row_length: int
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]
    # Columns that lead some index: MAX() over them is an index lookup.
    index_leading: frozenset[str]

    def column(self, name: str) -> ColumnInfo | None:
        lowered = name.lower()
        for col in self.columns:
            if col.name.lower() == lowered:
                return col
        return None

    @property
    def auto_increment_key(self) -> str | None:
        """The single auto-increment primary key column, if the key is one."""
        if len(self.primary_key) != 1:
            return None
        col = self.column(self.primary_key[0])
        return col.name if col is not None and col.auto_increment else None

    @property
    def exact_row_count(self) -> bool:
        # MyISAM/Aria keep an exact row count; InnoDB's TABLE_ROWS is an estimate.
        return self.engine.lower() in ("myisam", "aria")


@dataclass(frozen=True)
class SourceSchema:
    database: str
    address: str  # block.describe(): never holds a password
    tables: Mapping[str, TableInfo]

    def fingerprint(self) -> str:
        """sha256 of the structure only (tables, columns, keys): data changes do not move it."""
        canonical = {
            name: {
                "columns": [[c.name, c.definition] for c in info.columns],
                "primary_key": list(info.primary_key),
            }
            for name, info in sorted(self.tables.items())
        }
        payload = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(payload).hexdigest()


def read_schema(server: MySQLServerLike) -> SourceSchema:
    """Read the whole schema of the block's database with three information_schema queries."""
    conn = server.connect()
    try:
        return read_schema_with(conn, server.database, server.describe())
    finally:
        conn.close()


def read_schema_with(conn: Connection, database: str, address: str) -> SourceSchema:
    """Like :func:`read_schema`, on an open pymysql connection."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, COALESCE(ENGINE, ''), COALESCE(TABLE_ROWS, 0), COALESCE(DATA_LENGTH, 0), "
            "COALESCE(AVG_ROW_LENGTH, 0) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
            (database,),
        )
        table_rows = {row[0]: row for row in cur.fetchall()}
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, EXTRA "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        columns: dict[str, list[ColumnInfo]] = {}
        for table, name, data_type, column_type, nullable, extra in cur.fetchall():
            columns.setdefault(table, []).append(
                ColumnInfo(name, str(data_type).lower(), str(column_type), nullable == "YES", str(extra or ""))
            )
        cur.execute(
            "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            (database,),
        )
        primary: dict[str, list[str]] = {}
        leading: dict[str, set[str]] = {}
        for table, index, seq, column in cur.fetchall():
            if index == "PRIMARY":
                primary.setdefault(table, []).append(column)
            if int(seq) == 1:
                leading.setdefault(table, set()).add(column)
    tables = {}
    for name, (_, engine, rows, data_length, avg_row_length) in table_rows.items():
        tables[name] = TableInfo(
            name=name,
            engine=str(engine),
            table_rows=int(rows),
            data_length=int(data_length),
            avg_row_length=int(avg_row_length),
            columns=tuple(columns.get(name, ())),
            primary_key=tuple(primary.get(name, ())),
            index_leading=frozenset(leading.get(name, ())),
        )
    return SourceSchema(database=database, address=address, tables=dict(sorted(tables.items())))
