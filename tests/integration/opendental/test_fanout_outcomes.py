"""A fanned-out parent reads its children's table outcomes back from the metrics tables, whole."""

from __future__ import annotations

from collections.abc import Callable

from blocks.databases import PostgresServer
from clinicflow.opendental import fanout, metrics


def test_recorded_outcomes_come_back_whole_from_postgres(make_pg_db: Callable[[str], PostgresServer]) -> None:
    pg = make_pg_db("fanout")
    conn = pg.connect()
    try:
        metrics.ensure_metrics_tables(conn)
        metrics.start_run(conn, "night-1", "nightly_etl")
        written = metrics.TableOutcome(
            "patient",
            mode="full",
            rows=7,
            zero_dates=2,
            conversions={"Birthdate": {"zero_dates": 2}},
            verification="ok",
        )
        metrics.record_table(conn, "night-1", written)
        metrics.record_table(conn, "night-1", metrics.TableOutcome("clinic", status="failed", error="load: boom"))
        found = fanout.recorded_outcomes(conn, "night-1", ["patient", "clinic", "missing"])
    finally:
        conn.close()
    assert set(found) == {"patient", "clinic"}
    assert found["patient"] == written
    assert found["clinic"].failed
    assert found["clinic"].error == "load: boom"
