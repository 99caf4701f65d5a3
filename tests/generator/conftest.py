"""Fixtures for the generator tests: a fresh MariaDB database and raw readers."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pymysql.converters
import pytest

from blocks.databases import MySQLServer
from clinicflow.sql import quote_ident
from tests.conftest import unique_name

# Encoders kept (so connect() works), decoders dropped: every value arrives as
# the server's own bytes, which is what "byte-exact" is measured against.
RAW_CONVERSIONS = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


@pytest.fixture
def gen_db(make_mysql_db: Callable[[str], MySQLServer]) -> MySQLServer:
    return make_mysql_db("gen")


@pytest.fixture(scope="module")
def module_db() -> Iterator[MySQLServer]:
    """One database shared by a module's read-only tests (dropped after the module)."""
    admin = MySQLServer(host=os.environ.get("CLINICFLOW_TEST_MYSQL_HOST", "127.0.0.1"),
                        port=int(os.environ.get("CLINICFLOW_TEST_MYSQL_PORT", "3306")), username="root", database="")
    name = unique_name("genm")
    conn = admin.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {quote_ident(name, 'mysql')} CHARACTER SET utf8mb3")
    finally:
        conn.close()
    yield admin.model_copy(update={"database": name})
    conn = admin.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(name, 'mysql')}")
    finally:
        conn.close()


def query(server: MySQLServer, sql: str, params: Any = None) -> list[tuple]:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def raw_rows(server: MySQLServer, sql: str, params: Any = None) -> list[dict[str, bytes | None]]:
    """Rows as {column: bytes or None}, undecoded (text in the connection's utf8mb4)."""
    conn = server.connect(conv=RAW_CONVERSIONS, use_unicode=False)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
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
