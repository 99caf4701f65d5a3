"""Shared fixtures: real local MariaDB and PostgreSQL; the session's Prefect server and S3/GCS servers.

Every database a test makes gets a unique name (so parallel runs on one
machine, and the pytest-xdist workers of one run, never collide) and is dropped afterwards.
The session-wide servers are pytest plugins under tests/support: ``prefect_server``
(prefect_session.py, one ``prefect server start`` shared by all xdist workers) and
``s3_server`` / ``gcs_emulator_server`` (services.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Tests build credentials from the environment unless a test says otherwise;
# the session's Prefect server sets PREFECT_API_URL, which would otherwise
# switch the resolver to saved blocks.
os.environ.setdefault("CLINICFLOW_CREDENTIALS", "env")

# Library messages reach run logs as in production: Prefect reads these once, when first imported (below).
from flows.runtime import route_library_logs

route_library_logs()

from blocks.databases import MySQLServer, PostgresServer  # noqa: E402
from clinicflow.core.sql import quote_ident  # noqa: E402
from clinicflow_dev.admin import admin_pg  # noqa: E402

pytest_plugins = ["tests.support.prefect_session", "tests.support.services"]


def unique_name(prefix: str) -> str:
    return f"cf_{prefix}_{uuid.uuid4().hex[:8]}"


def local_mysql_admin() -> MySQLServer:
    """The local MariaDB as root, with no database selected."""
    return MySQLServer(
        host=os.environ.get("CLINICFLOW_TEST_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("CLINICFLOW_TEST_MYSQL_PORT", "3306")),
        username="root",
        database="",
    )


def create_mysql_database(admin: MySQLServer, prefix: str) -> MySQLServer:
    """Create an empty uniquely named database; return its block (drop it with drop_mysql_databases)."""
    name = unique_name(prefix)
    mysql_exec(admin, f"CREATE DATABASE {quote_ident(name, 'mysql')} CHARACTER SET utf8mb3")
    return admin.model_copy(update={"database": name})


def drop_mysql_databases(admin: MySQLServer, names: list[str]) -> None:
    mysql_exec(admin, *(f"DROP DATABASE IF EXISTS {quote_ident(name, 'mysql')}" for name in names))


def mysql_exec(server: MySQLServer, *statements: str, sql_mode: str = "NO_ENGINE_SUBSTITUTION") -> None:
    """Run statements (autocommit) in a session with the given sql_mode."""
    conn = server.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = %s", (sql_mode,))
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def mysql_query(server: MySQLServer, sql: str, params: Any = None) -> list[tuple]:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture
def mysql_server() -> MySQLServer:
    """The local MariaDB as root, with no database selected."""
    return local_mysql_admin()


@pytest.fixture
def make_mysql_db(mysql_server: MySQLServer) -> Iterator[Callable[[str], MySQLServer]]:
    """Factory: ``make_mysql_db('src')`` creates an empty database and returns its block."""
    created: list[MySQLServer] = []

    def make(prefix: str) -> MySQLServer:
        created.append(create_mysql_database(mysql_server, prefix))
        return created[-1]

    yield make
    drop_mysql_databases(mysql_server, [db.database for db in created])


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

    def make(prefix: str) -> PostgresServer:
        name = unique_name(prefix)
        admin_pg(pg_server, f"CREATE DATABASE {quote_ident(name, 'postgres')}")
        created.append(name)
        return pg_server.model_copy(update={"database": name})

    yield make
    for name in created:
        admin_pg(pg_server, f"DROP DATABASE IF EXISTS {quote_ident(name, 'postgres')} WITH (FORCE)")
