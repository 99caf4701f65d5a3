"""Checksums of a MySQL table: the server's ``CHECKSUM TABLE`` and an order-independent sum of every column's bytes."""

from __future__ import annotations

from clinicflow.connectors.mysql.catalog import read_table
from clinicflow.connectors.mysql.sessions import catalog_text, raw_connected
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.core.sql import quote_ident


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
    """Row count and an order-independent checksum of every stored column's bytes (for verification and tests).

    Generated columns are left out: the replica computes its own.
    """
    with raw_connected(server) as conn:
        cols = [c for c in read_table(conn, table).columns if not c.generated]
        # HEX of the text/bytes form: exact for doubles too (HEX of a number drops its fraction).
        parts = [
            f"IFNULL(HEX(CAST({quote_ident(c.name, 'mysql')}{' + 0' if c.is_bit else ''} AS BINARY)), 'N')"
            for c in cols
        ]
        expr = "MD5(CONCAT_WS('|', " + ", ".join(parts) + "))"
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT COUNT(*), COALESCE(SUM(CAST(CONV(SUBSTRING({expr}, 1, 15), 16, 10) AS UNSIGNED)), 0), "
                f"COALESCE(BIT_XOR(CAST(CONV(SUBSTRING({expr}, 16, 15), 16, 10) AS UNSIGNED)), 0) "
                f"FROM {quote_ident(table, 'mysql')}"
            )
            count, s, x = cur.fetchone()
        return int(count), f"{catalog_text(s)}:{catalog_text(x)}"
