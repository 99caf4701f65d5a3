"""`clinicflow status`: the last runs from the metrics tables; exit 1 when the last run failed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from blocks.databases import PostgresServer
from clinicflow.opendental import metrics
from clinicflow.opendental.metrics import TableOutcome


@pytest.fixture
def analytics(make_pg_db: Callable[[str], PostgresServer], monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    pg = make_pg_db("status")
    monkeypatch.setenv("COLUMNS", "250")  # rich's width: keep messages on one line for the assertions
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    for field, value in (("HOST", pg.host), ("PORT", str(pg.port)), ("USER", pg.username), ("DATABASE", pg.database)):
        monkeypatch.setenv(f"CLINICFLOW_ANALYTICS_POSTGRES_{field}", value)
    return pg


def _status(*args: str) -> tuple[int, str]:
    from clinicflow.cli import app

    # Nightly only: the session's Prefect server holds other tests' pipeline runs.
    result = CliRunner().invoke(
        app, ["status", "--subsystem", "nightly", *args], catch_exceptions=False, terminal_width=200
    )
    return result.exit_code, result.output


def _record(pg: PostgresServer, run_id: str, outcomes: list[TableOutcome]) -> None:
    conn = pg.connect()
    try:
        metrics.ensure_metrics_tables(conn)
        metrics.start_run(conn, run_id, "nightly_etl")
        for outcome in outcomes:
            metrics.record_table(conn, run_id, outcome)
        metrics.finish_run(conn, run_id, outcomes)
    finally:
        conn.close()


def test_status_exit_codes(analytics: PostgresServer) -> None:
    code, out = _status()
    assert code == 2
    assert "no runs recorded yet" in out

    _record(analytics, "run-1", [TableOutcome("patient", rows=10), TableOutcome("claim", rows=5)])
    code, out = _status()
    assert code == 0
    assert "run-1" in out
    assert "ok" in out

    _record(
        analytics,
        "run-2",
        [
            TableOutcome("patient", rows=3),
            TableOutcome("clinic", status="failed", error="load: incompatible type change"),
        ],
    )
    code, out = _status()
    assert code == 1
    assert "failed" in out
    assert "clinic" in out
    code, out = _status("--run", "run-2")
    assert code == 1
    assert "incompatible type change" in out
    assert "ingestion runs" not in out  # --run is about one nightly run
    code, out = _status("--run", "run-nope")  # an id that is not there says so (it printed the run list)
    assert code == 2
    assert "no nightly run run-nope recorded" in out

    # A run that started but never finished (killed) is not a success either.
    conn = analytics.connect()
    metrics.start_run(conn, "run-3", "nightly_etl")
    conn.close()
    code, out = _status("--limit", "2")
    assert code == 1
    assert "running" in out
    assert "run-1" not in out


def test_status_cannot_read_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_PORT", "1")
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_PASSWORD", "fake-sentinel-not-a-credential-15")
    code, out = _status()
    assert code == 2
    assert "cannot read postgresql://" in out
    assert "fake-sentinel-not-a-credential-15" not in out
