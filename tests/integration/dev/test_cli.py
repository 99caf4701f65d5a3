"""`clinicflow generate-opendental` against the local MariaDB, credentials from env vars (the resolver's env mode)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from blocks.databases import MySQLServer
from clinicflow.cli import app
from clinicflow.core.sql import quote_ident
from tests.conftest import unique_name

from .conftest import query


@pytest.fixture
def source_env(monkeypatch: pytest.MonkeyPatch, mysql_server: MySQLServer) -> Iterator[MySQLServer]:
    """The opendental-source block built from env vars, pointing at a database that does not exist yet."""
    name = unique_name("gencli")
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_HOST", mysql_server.host)
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PORT", str(mysql_server.port))
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_USER", mysql_server.username)
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_DATABASE", "opendental_not_this_one")
    yield mysql_server.model_copy(update={"database": name})
    conn = mysql_server.connect(database="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(name, 'mysql')}")
    finally:
        conn.close()


def test_generates_into_a_new_database_then_refuses_to_overwrite(source_env: MySQLServer) -> None:
    runner = CliRunner()
    args = [
        "generate-opendental",
        "--database",
        source_env.database,
        "--scale",
        "0.05",
        "--filler-tables",
        "4",
        "--procedurelog-rows",
        "3000",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["database"].endswith("/" + source_env.database)
    assert report["rows"]["procedurelog"] == 3000
    assert len(report["rows"]) == 21 + 4 + 1
    assert query(source_env, "SELECT COUNT(*) FROM procedurelog") == [(3000,)]
    assert query(
        source_env,
        "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
        (source_env.database,),
    ) == [("utf8mb3",)]

    # A database that already holds tables is never overwritten by accident.
    refused = runner.invoke(app, ["generate-opendental", "--database", source_env.database, "--scale", "0"])
    assert refused.exit_code == 1
    assert "--replace" in refused.output
    assert query(source_env, "SELECT COUNT(*) FROM procedurelog") == [(3000,)]

    replaced = runner.invoke(
        app, ["generate-opendental", "--database", source_env.database, "--scale", "0", "--no-edge-cases", "--replace"]
    )
    assert replaced.exit_code == 0, replaced.output
    assert query(source_env, "SELECT COUNT(*) FROM procedurelog") == [(0,)]
    assert "edgecase" not in {r[0] for r in query(source_env, "SHOW TABLES")}


def test_unreachable_server_exits_2_without_the_password(
    source_env: MySQLServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PORT", "1")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PASSWORD", "fake-sentinel-not-a-credential-11")
    result = CliRunner().invoke(app, ["generate-opendental", "--database", source_env.database])
    assert result.exit_code == 2
    assert "cannot reach mysql://" in result.output
    assert "fake-sentinel-not-a-credential-11" not in result.output
