"""Columns of a MySQL table as the replicator sees them, and the checks the copy relies on.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clinicflow.connectors.mysql.sessions import catalog_name, catalog_text, raw_connection
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.core.errors import SourceTableMissing
from clinicflow.core.sql import quote_ident

# MySQL's integer column types (DATA_TYPE values).
INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # e.g. "bigint"
    column_type: str  # e.g. "bigint(20) unsigned"
    nullable: bool = True
    collation: str = ""  # text columns: their bytes depend on it (latin1 vs utf8)

    @property
    def is_bit(self) -> bool:
        return self.data_type == "bit"

    @property
    def is_integer(self) -> bool:
        return self.data_type in INTEGER_TYPES


def source_columns(conn: Connection, table: str) -> list[Column]:
    """Copyable columns of ``table`` in the connection's database, in order."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, EXTRA, IS_NULLABLE, COALESCE(COLLATION_NAME, '') "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION",
            (table,),
        )
        rows = cur.fetchall()
    if not rows:
        raise SourceTableMissing(f"table {table!r}: not found in the source database")
    # Generated columns are computed by the replica itself.
    return [Column(catalog_name(n), catalog_name(d).lower(), catalog_name(t).lower(),
                   catalog_name(nullable).upper() == "YES", catalog_name(coll).lower())
            for n, d, t, extra, nullable, coll in rows if "GENERATED" not in catalog_name(extra).upper()]


def column_changes(source: Sequence[Column], replica: Sequence[Column]) -> list[str]:
    """How the replica's columns differ from the source's (empty: same names, order, types, nullability, collation).

    Any difference means the replica's DDL is stale: an incremental copy into
    it could truncate a widened value or store text in the old charset.
    """
    old = {c.name: c for c in replica}
    new = {c.name: c for c in source}
    changes = [f"{name} added" for name in new if name not in old]
    changes += [f"{name} removed" for name in old if name not in new]
    for name, col in new.items():
        before = old.get(name)
        if before is None:
            continue
        if before.column_type != col.column_type:
            changes.append(f"{name} {before.column_type} -> {col.column_type}")
        if before.nullable != col.nullable:
            changes.append(f"{name} {'NULL' if before.nullable else 'NOT NULL'} -> "
                           f"{'NULL' if col.nullable else 'NOT NULL'}")
        if before.collation != col.collation:
            changes.append(f"{name} collation {before.collation or 'none'} -> {col.collation or 'none'}")
    if not changes and [c.name for c in source] != [c.name for c in replica]:
        changes.append("column order")
    return changes


def source_primary_key(conn: Connection, table: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (table,),
        )
        return [catalog_name(r[0]) for r in cur.fetchall()]


def table_exists(conn: Connection, table: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                    (table,))
        return cur.fetchone() is not None


def checksum_table(conn: Connection, table: str) -> str | None:
    """The server's ``CHECKSUM TABLE`` of ``table`` as text; None when it gives none (no such table).

    Instant where the engine keeps a live checksum, else one scan of the table.
    It depends on the engine and row format as well as the rows, so it is only
    compared between tables made from one definition: unequal sums for equal
    rows cost a copy, never a skipped change.
    """
    with conn.cursor() as cur:
        cur.execute(f"CHECKSUM TABLE {quote_ident(table, 'mysql')}")
        row = cur.fetchone()
    return None if row is None or row[1] is None else catalog_text(row[1])


def table_checksum(server: MySQLServerLike, table: str) -> tuple[int, str]:
    """Row count and an order-independent checksum of every column's bytes (for verification and tests)."""
    conn = raw_connection(server)
    try:
        cols = source_columns(conn, table)
        # HEX of the text/bytes form: exact for doubles too (HEX of a number drops its fraction).
        parts = [f"IFNULL(HEX(CAST({quote_ident(c.name, 'mysql')}{' + 0' if c.is_bit else ''} AS BINARY)), 'N')"
                 for c in cols]
        expr = "MD5(CONCAT_WS('|', " + ", ".join(parts) + "))"
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*), COALESCE(SUM(CAST(CONV(SUBSTRING({expr}, 1, 15), 16, 10) AS UNSIGNED)), 0), "
                        f"COALESCE(BIT_XOR(CAST(CONV(SUBSTRING({expr}, 16, 15), 16, 10) AS UNSIGNED)), 0) "
                        f"FROM {quote_ident(table, 'mysql')}")
            count, s, x = cur.fetchone()
        return int(count), f"{catalog_text(s)}:{catalog_text(x)}"
    finally:
        conn.close()
