"""Fixtures for the generator tests: a fresh MariaDB database and raw readers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pymysql.converters
import pytest

from blocks.databases import MySQLServer
from clinicflow.core.sql import quote_ident
from tests.conftest import create_mysql_database, drop_mysql_databases, local_mysql_admin
from tests.conftest import mysql_query as query  # noqa: F401 - the generator tests' reader

# Encoders kept (so connect() works), decoders dropped: every value arrives as
# the server's own bytes, which is what "byte-exact" is measured against.
RAW_CONVERSIONS = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


@pytest.fixture
def gen_db(make_mysql_db: Callable[[str], MySQLServer]) -> MySQLServer:
    return make_mysql_db("gen")


@pytest.fixture(scope="module")
def module_db() -> Iterator[MySQLServer]:
    """One database shared by a module's read-only tests (dropped after the module)."""
    admin = local_mysql_admin()
    db = create_mysql_database(admin, "genm")
    yield db
    drop_mysql_databases(admin, [db.database])


def raw_rows(server: MySQLServer, sql: str, params: Any = None) -> list[dict[str, bytes | None]]:
    """Rows as {column: bytes or None}, undecoded (text in the connection's utf8mb4)."""
    conn = server.connect(conv=RAW_CONVERSIONS, use_unicode=False)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


def checksums(server: MySQLServer, tables: list[str]) -> dict[str, int]:
    """CHECKSUM TABLE ... EXTENDED of each table (a hash of every row's bytes)."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            out = {}
            for table in tables:
                cur.execute(f"CHECKSUM TABLE {quote_ident(table, 'mysql')} EXTENDED")
                out[table] = int(cur.fetchone()[1])
            return out
    finally:
        conn.close()
