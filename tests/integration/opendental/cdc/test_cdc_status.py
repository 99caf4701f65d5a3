"""`clinicflow status` and `clinicflow cdc status|stop` show and steer the CDC of a source."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicflow.opendental import metrics
from clinicflow.opendental.cdc.lag import cdc_lag
from clinicflow.opendental.cdc.runner import CdcOptions, CdcRunner
from clinicflow.opendental.metrics import TableOutcome
from clinicflow_dev.binlog_server import cli_env
from tests.conftest import mysql_exec
from tests.integration.opendental.cdc.cdc_support import create_source, write_tables_yml


def _cli(*args: str) -> tuple[int, str]:
    from clinicflow.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False, terminal_width=250)
    return result.exit_code, result.output


def test_status_shows_lag_per_source_and_stop_is_recorded(
    make_binlog_db, make_mysql_db, make_pg_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    src, replica, pg = make_binlog_db("cdcstat"), make_mysql_db("cdcstat"), make_pg_db("cdcstat")
    tables_file, config = write_tables_yml(tmp_path)
    create_source(src, rows=5)
    for key, value in cli_env(src, replica, pg, tables_file).items():
        if key.startswith("CLINICFLOW_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("COLUMNS", "250")
    assert _cli("cdc", "status")[0] == 2  # never ran here
    CdcRunner(src, replica, pg, config, CdcOptions(server_id=5401, until_caught_up=True)).run()
    mysql_exec(src, "UPDATE procnote SET Body = 'later' WHERE NoteNum = 1", "DELETE FROM patient LIMIT 1")

    code, out = _cli("cdc", "status")
    assert code == 0
    assert "127.0.0.1" in out
    assert "stopped" in out
    (lag,) = cdc_lag(replica, src)
    assert lag.events_behind is not None
    assert lag.events_behind >= 2  # two transactions not applied yet
    assert lag.seconds_behind is not None
    assert str(lag.events_behind) in out

    conn = pg.connect()
    try:
        metrics.ensure_metrics_tables(conn)
        metrics.start_run(conn, "run-1", "nightly_etl")
        metrics.finish_run(conn, "run-1", [TableOutcome("patient", rows=1)])
    finally:
        conn.close()
    # Only the subsystems this test writes: the shared Prefect server holds other tests' failed runs.
    code, out = _cli("status", "--subsystem", "nightly", "--subsystem", "cdc")
    assert code == 0
    assert "run-1" in out
    assert "CDC (binlog)" in out

    code, out = _cli("cdc", "stop")
    assert code == 0
    assert "stop requested" in out


def test_start_against_a_source_without_binlog_exits_2_naming_the_setting(
    make_mysql_db, make_pg_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    src, replica, pg = make_mysql_db("cdcnobin"), make_mysql_db("cdcnobinrep"), make_pg_db("cdcnobin")
    tables_file, _ = write_tables_yml(tmp_path)
    for key, value in cli_env(src, replica, pg, tables_file).items():
        if key.startswith("CLINICFLOW_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("COLUMNS", "250")
    code, out = _cli("cdc", "start", "--until-caught-up")
    assert code == 2
    assert "log_bin" in out
    assert "binlog_format" in out
    assert "nightly goes on" in out
