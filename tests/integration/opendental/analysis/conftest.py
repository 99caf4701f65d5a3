"""Fixtures for the schema-analysis tests: a seeded OpenDental-shaped source and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from blocks.databases import MySQLServer
from clinicflow_dev import generator
from tests.conftest import mysql_exec


@pytest.fixture
def demo_seeded(make_mysql_db: Callable[[str], MySQLServer]) -> tuple[MySQLServer, dict[str, int]]:
    """The demo database exactly as `clinicflow demo` seeds it (generator defaults), and its rows per table."""
    server = make_mysql_db("an")
    return server, generator.seed(server)


@pytest.fixture
def demo_source(demo_seeded: tuple[MySQLServer, dict[str, int]]) -> MySQLServer:
    return demo_seeded[0]


def execute(server: MySQLServer, *statements: str) -> None:
    """Statements in a session with an empty sql_mode (zero dates and other legacy values accepted)."""
    mysql_exec(server, *statements, sql_mode="")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run `clinicflow ...` in-process against a source block given by env vars, as an operator would."""
    from clinicflow.cli import app

    def run(server: MySQLServer, tables_file: Path, *args: str) -> Result:
        monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
        monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_HOST", server.host)
        monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PORT", str(server.port))
        monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_USER", server.username)
        monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_DATABASE", server.database)
        monkeypatch.setenv("CLINICFLOW_TABLES_FILE", str(tables_file))
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    return run
