"""The C client transport (clinicflow.connectors.mysql.client) without a server: command line, pymysql switch."""

from __future__ import annotations

import shutil

import pytest

from blocks.databases import MySQLServer
from clinicflow.connectors.mysql import client

pytestmark = pytest.mark.skipif(client.client_binary() is None, reason="mariadb client not installed")


def test_client_runs_under_stdbuf_when_coreutils_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    server = MySQLServer(host="db", username="u", database="d")
    command = client._command("/usr/bin/mariadb", "/tmp/x.cnf", server, "SELECT 1", "'+00:00'")
    if shutil.which("stdbuf"):
        assert command[:2] == [shutil.which("stdbuf"), f"--output={client.CLIENT_OUTPUT_BUFFER}"]
    monkeypatch.setattr(client.shutil, "which", lambda name: None)
    assert client._command("/usr/bin/mariadb", "/tmp/x.cnf", server, "SELECT 1", "'+00:00'")[0] == "/usr/bin/mariadb"


def test_pymysql_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(client.EXPORT_ENV, "pymysql")
    assert client.client_binary() is None
