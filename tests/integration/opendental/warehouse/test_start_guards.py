"""Dangerous configurations are refused before anything is touched, and every failed start is recorded.

Real MariaDB and PostgreSQL, the real CLI (in this process; in its own process for one case per
command, as the CronJob runs it): the source's tables keep their
create times and checksums when the replica (or analytics) block names the
source; `clinicflow status` exits 1 with the reason after each failed start.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental import guards, metrics
from clinicflow.opendental.metrics import TableOutcome
from tests.conftest import mysql_query
from tests.integration.opendental.warehouse.conftest import _set_env, mysql_exec, pg_query

ROOT = Path(__file__).resolve().parents[4]


@dataclass
class Env:
    source: MySQLServer
    replica: MySQLServer
    pg: PostgresServer
    tables_file: Path


@pytest.fixture
def env(
    make_mysql_db: Callable[[str], MySQLServer],
    make_pg_db: Callable[[str], PostgresServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Env:
    source, replica, pg = make_mysql_db("gsrc"), make_mysql_db("grep"), make_pg_db("gpg")
    mysql_exec(
        source,
        "CREATE TABLE patient (PatNum bigint NOT NULL PRIMARY KEY, LName varchar(40)) ENGINE=MyISAM",
        "INSERT INTO patient VALUES (1, 'Alpha'), (2, 'Beta')",
        "CREATE TABLE claim (ClaimNum bigint NOT NULL PRIMARY KEY, Fee double) ENGINE=InnoDB",
        "INSERT INTO claim VALUES (10, 1.5)",
    )
    path = tmp_path / "tables.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "tables": {
                    "patient": {"primary_key": ["PatNum"], "estimated_rows": 2},
                    "claim": {"primary_key": ["ClaimNum"], "estimated_rows": 1},
                },
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("COLUMNS", "250")
    _set_env(monkeypatch, "opendental-source", source)
    _set_env(monkeypatch, "opendental-replication", replica)
    _set_env(monkeypatch, "analytics-postgres", pg)
    monkeypatch.setenv("CLINICFLOW_TABLES_FILE", str(path))
    # `status` here is the nightly's: other subsystems' runs (the shared Prefect server, a local demo's DICOM
    # database) are other tests' and must not decide its exit code.
    return Env(source, replica, pg, path)


def _process_cli(*args: str) -> tuple[int, str]:
    """The real command in its own process (as the CronJob runs it), against the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, COLUMNS="250", PREFECT_API_URL=str(PREFECT_API_URL.value() or ""))
    proc = subprocess.run(
        [sys.executable, "-m", "clinicflow.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout + proc.stderr


def _cli(*args: str) -> tuple[int, str]:
    """The same command in this process (Typer's runner): its exit code and output, a crash's traceback
    included as the process would print it. The process boundary is tested by the _process_cli cases."""
    import traceback

    from typer.testing import CliRunner

    from clinicflow.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    out = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        out += "".join(traceback.format_exception(result.exception))
    return result.exit_code, out


def _source_state(source: MySQLServer) -> dict[str, Any]:
    """Every table of the source with its create time and checksum (a re-created table changes both or one)."""
    rows = mysql_query(
        source,
        "SELECT TABLE_NAME, CREATE_TIME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
        (source.database,),
    )
    state: dict[str, Any] = {}
    for name, created in rows:
        checksum = mysql_query(source, f"CHECKSUM TABLE `{name}`")[0][1]
        state[name] = (created, checksum)
    return state


def _good_night(pg: PostgresServer) -> None:
    """A successful earlier night: what `status` showed (exit 0) when a failed start was not recorded."""
    conn = pg.connect()
    try:
        metrics.ensure_metrics_tables(conn)
        metrics.start_run(conn, "good-night", "nightly_etl")
        metrics.finish_run(conn, "good-night", [TableOutcome("patient", rows=2)])
    finally:
        conn.close()


def _wait_past_create_time_resolution() -> None:
    # information_schema.CREATE_TIME has one-second resolution: a table re-created within
    # the same second as the original would keep its create time.
    time.sleep(1.1)


# --------------------------------------------------------------------------- dangerous targets


def test_replica_that_is_the_source_is_refused_and_the_source_untouched(
    env: Env, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _source_state(env.source)
    _wait_past_create_time_resolution()
    # Same server and database, spelled differently (localhost vs 127.0.0.1).
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_REPLICATION_HOST", "localhost")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_REPLICATION_DATABASE", env.source.database)
    code, out = _process_cli("nightly", "--full-refresh")
    assert code == 2
    assert "refusing to run" in out
    assert "is the source" in out
    assert _source_state(env.source) == before
    assert "_clinicflow_replication_state" not in before

    code, out = _process_cli("replicate", "--full-refresh")
    assert code == 2, out[-3000:]
    assert "refusing to run" in out, out[-3000:]
    assert _source_state(env.source) == before

    code, out = _process_cli("status", "--subsystem", "nightly")
    assert code == 1
    assert "refusing to run" in out


class _PortForwarder:
    """A TCP relay from a free local port to MariaDB: another address for the same server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed = True
        self.listener.close()


@pytest.fixture
def forwarder(mysql_server: MySQLServer) -> Iterator[_PortForwarder]:
    relay = _PortForwarder((mysql_server.host, mysql_server.port))
    yield relay
    relay.close()


def test_the_same_server_behind_another_address_is_recognised_by_its_identity(
    env: Env, forwarder: _PortForwarder, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    through_relay = env.source.model_copy(update={"port": forwarder.port})
    assert not guards.same_address(env.source, through_relay)
    assert guards.mysql_identity(env.source).same_server(guards.mysql_identity(through_relay))
    with pytest.raises(guards.DangerousConfigError, match="is the source"):
        guards.check_replica_is_not_source(env.source, through_relay)
    # Another database on the same server is a valid replica.
    guards.check_replica_is_not_source(env.source, env.replica.model_copy(update={"port": forwarder.port}))

    before = _source_state(env.source)
    _wait_past_create_time_resolution()
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_REPLICATION_PORT", str(forwarder.port))
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_REPLICATION_DATABASE", env.source.database)
    code, out = _cli("nightly", "--full-refresh")
    assert code == 2
    assert "refusing to run" in out
    assert _source_state(env.source) == before


def test_analytics_pointing_at_the_source_is_refused_before_anything_is_written(
    env: Env, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _source_state(env.source)
    _wait_past_create_time_resolution()
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_HOST", "localhost")
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_PORT", str(env.source.port))
    code, out = _cli("nightly")
    assert code == 2
    assert "refusing to run" in out
    assert "analytics" in out
    assert _source_state(env.source) == before
    assert (
        mysql_query(
            env.replica,
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (env.replica.database,),
        )[0][0]
        == 0
    )


def test_a_valid_configuration_still_runs(env: Env, prefect_server: None) -> None:
    code, out = _cli("nightly")
    assert code == 0, out
    code, out = _cli("status", "--subsystem", "nightly")
    assert code == 0, out
    assert "ok" in out


# --------------------------------------------------------------------------- failed starts are recorded


def _broken_yaml(env: Env, monkeypatch: pytest.MonkeyPatch) -> str:
    env.tables_file.write_text("tables:\n  patient: {primary_key: [PatNum]\n", encoding="utf-8")
    return "not valid YAML: line 3"


def _duplicate_table(env: Env, monkeypatch: pytest.MonkeyPatch) -> str:
    env.tables_file.write_text("tables:\n  patient: {}\n  patient: {tier: 1}\n", encoding="utf-8")
    return "duplicate key 'patient'"


def _no_tables(env: Env, monkeypatch: pytest.MonkeyPatch) -> str:
    env.tables_file.write_text("version: 1\ntables: {}\n", encoding="utf-8")
    return "tables.yml lists no tables"


def _replica_unreachable(env: Env, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_REPLICATION_PORT", "1")
    return "could not start: OperationalError"


def _source_unreachable(env: Env, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PORT", "1")
    return "could not start: OperationalError"


def _bad_port_variable(env: Env, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_REPLICATION_PORT", "not-a-port")
    return "CLINICFLOW_OPENDENTAL_REPLICATION_PORT must be an integer"


FAILED_STARTS = {
    "broken_yaml": _broken_yaml,
    "duplicate_table": _duplicate_table,
    "no_tables": _no_tables,
    "replica_unreachable": _replica_unreachable,
    "source_unreachable": _source_unreachable,
    "bad_port_variable": _bad_port_variable,
}


@pytest.mark.parametrize("case", list(FAILED_STARTS))
def test_status_exits_1_after_a_failed_start(
    case: str, env: Env, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _good_night(env.pg)
    assert _cli("status", "--subsystem", "nightly")[0] == 0
    expected = FAILED_STARTS[case](env, monkeypatch)
    code, out = _cli("nightly")
    assert code == 2, out
    assert expected.removeprefix("could not start: ") in out, out
    if case in ("broken_yaml", "duplicate_table", "no_tables"):
        assert "Traceback" not in out, "a tables.yml error is one line, no traceback"
    code, out = _cli("status", "--subsystem", "nightly")
    assert code == 1, out
    assert "last run failed: " in out
    assert expected in out.split("last run failed: ")[1]
    runs = pg_query(
        env.pg, "SELECT status, finished_at IS NOT NULL FROM clinicflow.etl_runs ORDER BY started_at DESC LIMIT 1"
    )
    assert runs == [("failed", True)]


def test_unknown_table_and_the_load_command_are_recorded_too(env: Env, prefect_server: None) -> None:
    _good_night(env.pg)
    code, out = _process_cli("load", "--tables", "nosuchtable")
    assert code == 2
    assert "tables not in tables.yml: nosuchtable" in out
    code, out = _process_cli("status", "--subsystem", "nightly")
    assert code == 1
    assert "nosuchtable" in out


def test_a_failed_start_inside_the_flow_is_recorded(env: Env, prefect_server: None) -> None:
    """The deployment path (no CLI pre-check): the flow itself records the failed start before raising."""
    from clinicflow.opendental.tables.config import ConfigError
    from flows.nightly import nightly_etl

    _good_night(env.pg)
    env.tables_file.write_text("tables:\n  patient: {batch_size: true}\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        nightly_etl(tables_file=str(env.tables_file))
    code, out = _cli("status", "--subsystem", "nightly")
    assert code == 1
    assert "field 'batch_size'" in out


def test_zero_tables_succeed_only_when_asked(env: Env, prefect_server: None) -> None:
    env.tables_file.write_text("version: 1\ntables: {}\n", encoding="utf-8")
    code, out = _cli("nightly", "--allow-empty")
    assert code == 0, out
    assert _cli("status", "--subsystem", "nightly")[0] == 0
