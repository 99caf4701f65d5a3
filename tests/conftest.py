"""Shared fixtures: real local MariaDB and PostgreSQL, a Prefect test server.

Every database a test makes gets a unique name (so parallel runs on one
machine never collide) and is dropped afterwards.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

# Tests build credentials from the environment unless a test says otherwise;
# the Prefect test server below sets PREFECT_API_URL, which would otherwise
# switch the resolver to saved blocks.
os.environ.setdefault("CLINICFLOW_CREDENTIALS", "env")

from blocks.databases import MySQLServer, PostgresServer  # noqa: E402
from clinicflow.sql import quote_ident  # noqa: E402


def unique_name(prefix: str) -> str:
    return f"cf_{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect API for the whole session (flows, artifacts, blocks)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def mysql_server() -> MySQLServer:
    """The local MariaDB as root, with no database selected."""
    return MySQLServer(
        host=os.environ.get("CLINICFLOW_TEST_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("CLINICFLOW_TEST_MYSQL_PORT", "3306")),
        username="root",
        database="",
    )


@pytest.fixture
def make_mysql_db(mysql_server: MySQLServer) -> Iterator[Callable[[str], MySQLServer]]:
    """Factory: ``make_mysql_db('src')`` creates an empty database and returns its block."""
    created: list[str] = []

    def make(prefix: str) -> MySQLServer:
        name = unique_name(prefix)
        conn = mysql_server.connect(database=None)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {quote_ident(name, 'mysql')} CHARACTER SET utf8mb3")
        finally:
            conn.close()
        created.append(name)
        return mysql_server.model_copy(update={"database": name})

    yield make
    conn = mysql_server.connect(database=None)
    try:
        with conn.cursor() as cur:
            for name in created:
                cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(name, 'mysql')}")
    finally:
        conn.close()


@pytest.fixture
def pg_server() -> PostgresServer:
    return PostgresServer(
        host=os.environ.get("CLINICFLOW_TEST_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("CLINICFLOW_TEST_PG_PORT", "5432")),
        username=os.environ.get("CLINICFLOW_TEST_PG_USER", "postgres"),
        database="postgres",
    )


@pytest.fixture
def make_pg_db(pg_server: PostgresServer) -> Iterator[Callable[[str], PostgresServer]]:
    """Factory: ``make_pg_db('analytics')`` creates an empty database and returns its block."""
    created: list[str] = []

    def _admin(sql: str) -> None:
        conn = pg_server.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def make(prefix: str) -> PostgresServer:
        name = unique_name(prefix)
        _admin(f"CREATE DATABASE {quote_ident(name, 'postgres')}")
        created.append(name)
        return pg_server.model_copy(update={"database": name})

    yield make
    for name in created:
        _admin(f"DROP DATABASE IF EXISTS {quote_ident(name, 'postgres')} WITH (FORCE)")
