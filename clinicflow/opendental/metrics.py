"""Run and per-table metrics in PostgreSQL (schema ``clinicflow``, out of dbt's ``raw``).

``clinicflow.etl_runs``: one row per flow run (started, finished, status, counts).
``clinicflow.etl_table_metrics``: one row per table per run: rows, bytes,
seconds, status, error, converted-value counts (zero dates, NUL bytes, per
column in ``conversions``), deleted rows, verification result.

The ``status`` command and the nightly artifact read from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from clinicflow.core.dbapi import PgConnection, column_names
from clinicflow.core.sql import quote_ident
from clinicflow.core.verdicts import Verdict, failed_of

METRICS_SCHEMA = "clinicflow"

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE IF NOT EXISTS {schema}.etl_runs (
        run_id text PRIMARY KEY,
        flow_name text NOT NULL,
        flow_run_id text,
        started_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        status text NOT NULL DEFAULT 'running',
        tables_total integer NOT NULL DEFAULT 0,
        tables_failed integer NOT NULL DEFAULT 0,
        rows_loaded bigint NOT NULL DEFAULT 0,
        parameters jsonb,
        message text
    )""",
    """CREATE TABLE IF NOT EXISTS {schema}.etl_table_metrics (
        run_id text NOT NULL REFERENCES {schema}.etl_runs (run_id) ON DELETE CASCADE,
        table_name text NOT NULL,
        status text NOT NULL,
        mode text,
        rows bigint NOT NULL DEFAULT 0,
        rows_changed bigint NOT NULL DEFAULT 0,
        bytes bigint NOT NULL DEFAULT 0,
        seconds double precision NOT NULL DEFAULT 0,
        replication_rows bigint,
        replication_seconds double precision,
        zero_dates bigint NOT NULL DEFAULT 0,
        nul_bytes bigint NOT NULL DEFAULT 0,
        conversions jsonb,
        deleted_rows bigint NOT NULL DEFAULT 0,
        verification text,
        error text,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, table_name)
    )""",
    "CREATE INDEX IF NOT EXISTS etl_runs_started_idx ON {schema}.etl_runs (started_at DESC)",
    # Reconciliation figures (added after the first release: existing tables get the columns).
    """ALTER TABLE {schema}.etl_table_metrics
        ADD COLUMN IF NOT EXISTS missing_rows bigint NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS changed_rows bigint NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS ranges_recopied integer NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS swept text,
        ADD COLUMN IF NOT EXISTS reconciliation jsonb""",
]


# How a table was handled: copied/loaded fully, incrementally, found unchanged, or not at all (failed early).
TableMode = Literal["full", "incremental", "unchanged", "none"]


@dataclass
class TableOutcome:
    """What happened to one table in one run (replication and load)."""

    table: str
    status: str = "ok"  # ok | unchanged | failed | skipped
    mode: TableMode | None = None
    rows: int = 0  # rows read from the replica and written (COPY)
    rows_changed: int = 0  # rows inserted or updated in raw (incremental merges)
    bytes: int = 0
    seconds: float = 0.0
    replication_rows: int | None = None
    replication_seconds: float | None = None
    zero_dates: int = 0
    nul_bytes: int = 0
    conversions: dict[str, dict[str, int]] = field(default_factory=dict)
    deleted_rows: int = 0  # reconciliation: rows removed from raw (deleted at the source)
    missing_rows: int = 0  # reconciliation: rows copied into raw because they were missing
    changed_rows: int = 0  # reconciliation: rows re-copied into raw after a checksum mismatch
    ranges_recopied: int = 0  # reconciliation: key ranges re-read into raw
    swept: str | None = None  # what tonight's reconciliation compared, per leg
    reconciliation: dict[str, dict[str, Any]] = field(default_factory=dict)  # both legs' figures
    verification: str | None = None  # ok | stale | differs | skipped, plus summary in error when not ok
    error: str | None = None

    def record_reconciliation(self, leg: str, stats: Any) -> None:
        """Keep one leg's figures ("replica": source -> replica, "raw": replica -> raw)."""
        self.reconciliation[leg] = stats.figures()
        if leg == "raw":
            self.deleted_rows, self.missing_rows = stats.rows_deleted, stats.rows_missing
            self.changed_rows, self.ranges_recopied = stats.rows_changed, stats.ranges_recopied
        self.swept = "; ".join(
            f"{name} {leg_stats['swept']} ({leg_stats['ranges_hashed']}/{leg_stats['ranges']} ranges checksummed)"
            for name, leg_stats in sorted(self.reconciliation.items())
        )

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def as_row(self) -> dict[str, Any]:
        """One artifact row (flat values)."""
        row = asdict(self)
        row["conversions"] = json.dumps(self.conversions, sort_keys=True) if self.conversions else ""
        row["reconciliation"] = json.dumps(self.reconciliation, sort_keys=True) if self.reconciliation else ""
        row["seconds"] = round(self.seconds, 2)
        if self.replication_seconds is not None:
            row["replication_seconds"] = round(self.replication_seconds, 2)
        row["error"] = self.error or ""
        return row


def ensure_metrics_tables(pg_conn: PgConnection, schema: str = METRICS_SCHEMA) -> None:
    q = quote_ident(schema, "postgres")
    with pg_conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('clinicflow.opendental.metrics.ddl'))")
        for statement in _DDL:
            cur.execute(statement.format(schema=q))
    pg_conn.commit()


def start_run(
    pg_conn: PgConnection,
    run_id: str,
    flow_name: str,
    *,
    flow_run_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    schema: str = METRICS_SCHEMA,
) -> None:
    q = quote_ident(schema, "postgres")
    with pg_conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {q}.etl_runs (run_id, flow_name, flow_run_id, parameters) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (run_id) DO NOTHING",
            (run_id, flow_name, flow_run_id, json.dumps(parameters or {}, default=str)),
        )
    pg_conn.commit()


def record_table(pg_conn: PgConnection, run_id: str, outcome: TableOutcome, schema: str = METRICS_SCHEMA) -> None:
    """Insert (or replace, on a retried task) the metrics row of one table."""
    record_tables(pg_conn, run_id, [outcome], schema)


def record_tables(
    pg_conn: PgConnection, run_id: str, outcomes: Sequence[TableOutcome], schema: str = METRICS_SCHEMA
) -> None:
    """Insert (or replace) the metrics rows of many tables in one statement per 500 rows, one commit."""
    from psycopg2.extras import execute_values

    q = quote_ident(schema, "postgres")
    latest = {o.table: o for o in outcomes}  # one statement may not update a row twice: the last one wins, as before
    rows = [
        (
            run_id,
            o.table,
            o.status,
            o.mode,
            o.rows,
            o.rows_changed,
            o.bytes,
            o.seconds,
            o.replication_rows,
            o.replication_seconds,
            o.zero_dates,
            o.nul_bytes,
            json.dumps(o.conversions) if o.conversions else None,
            o.deleted_rows,
            o.verification,
            o.error,
            o.missing_rows,
            o.changed_rows,
            o.ranges_recopied,
            o.swept,
            json.dumps(o.reconciliation) if o.reconciliation else None,
        )
        for o in latest.values()
    ]
    with pg_conn.cursor() as cur:
        execute_values(
            cur,
            f"INSERT INTO {q}.etl_table_metrics (run_id, table_name, status, mode, rows, rows_changed, bytes, seconds, "
            "replication_rows, replication_seconds, zero_dates, nul_bytes, conversions, deleted_rows, "
            "verification, error, "
            "missing_rows, changed_rows, ranges_recopied, swept, reconciliation) "
            "VALUES %s "
            "ON CONFLICT (run_id, table_name) DO UPDATE SET status = EXCLUDED.status, mode = EXCLUDED.mode, "
            "rows = EXCLUDED.rows, rows_changed = EXCLUDED.rows_changed, bytes = EXCLUDED.bytes, "
            "seconds = EXCLUDED.seconds, replication_rows = EXCLUDED.replication_rows, "
            "replication_seconds = EXCLUDED.replication_seconds, zero_dates = EXCLUDED.zero_dates, "
            "nul_bytes = EXCLUDED.nul_bytes, conversions = EXCLUDED.conversions, "
            "deleted_rows = EXCLUDED.deleted_rows, verification = EXCLUDED.verification, error = EXCLUDED.error, "
            "missing_rows = EXCLUDED.missing_rows, changed_rows = EXCLUDED.changed_rows, "
            "ranges_recopied = EXCLUDED.ranges_recopied, swept = EXCLUDED.swept, "
            "reconciliation = EXCLUDED.reconciliation, recorded_at = now()",
            rows,
            template="(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            page_size=500,
        )
    pg_conn.commit()


def tables_failed_message(outcomes: Sequence[TableOutcome]) -> str | None:
    """``"N of M tables failed: table: error; ..."`` (the first ten), or None when no table failed."""
    return failed_of([f"{o.table}: {o.error}" for o in outcomes if o.failed], len(outcomes), "tables")


def night_verdict(flow_name: str, outcomes: Sequence[TableOutcome], partitions_failed: str = "") -> Verdict:
    """The verdict of a nightly (or load) run: its summary line, and its failure when a table failed or, fanned
    out, a child run was lost (``partitions_failed``, the parent's line naming them): such a night fails even
    when every table committed, so that a rerun with its key retries those partitions."""
    failed = sum(1 for o in outcomes if o.failed)
    summary = (
        f"{flow_name}: {len(outcomes) - failed} of {len(outcomes)} tables ok, {failed} failed; "
        f"{sum(o.rows for o in outcomes)} rows loaded, {sum(o.zero_dates for o in outcomes)} zero dates → NULL, "
        f"{sum(o.nul_bytes for o in outcomes)} NUL bytes removed"
        + (f"; {partitions_failed}" if partitions_failed else "")
    )
    tables = tables_failed_message(outcomes)
    if tables is not None:
        failure: str | None = tables + (f" ({partitions_failed})" if partitions_failed else "")
    elif partitions_failed:
        failure = f"{len(outcomes)} of {len(outcomes)} tables ok, but {partitions_failed}"
    else:
        failure = None
    return Verdict(summary, failure)


def finish_run(
    pg_conn: PgConnection,
    run_id: str,
    outcomes: list[TableOutcome],
    *,
    message: str | None = None,
    schema: str = METRICS_SCHEMA,
    other_failure: bool = False,
) -> str:
    """Close the run row; return its status ('failed' when any table failed, or ``other_failure``: a lost child run)."""
    failed = sum(1 for o in outcomes if o.failed)
    status = "failed" if failed or other_failure else "ok"
    q = quote_ident(schema, "postgres")
    with pg_conn.cursor() as cur:
        cur.execute(
            f"UPDATE {q}.etl_runs SET finished_at = now(), status = %s, tables_total = %s, "
            "tables_failed = %s, rows_loaded = %s, message = %s WHERE run_id = %s",
            (status, len(outcomes), failed, sum(o.rows for o in outcomes), message, run_id),
        )
    pg_conn.commit()
    return status


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    flow_name: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    tables_total: int
    tables_failed: int
    rows_loaded: int
    message: str | None
    failed_tables: tuple[str, ...]


def last_runs(pg_conn: PgConnection, limit: int = 10, schema: str = METRICS_SCHEMA) -> list[RunSummary]:
    """The latest runs, newest first (empty when the metrics tables do not exist yet)."""
    q = quote_ident(schema, "postgres")
    with pg_conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{q}.etl_runs",))
        if cur.fetchone()[0] is None:
            pg_conn.rollback()
            return []
        cur.execute(
            f"SELECT r.run_id, r.flow_name, r.started_at, r.finished_at, r.status, r.tables_total, r.tables_failed, "
            f"r.rows_loaded, r.message, COALESCE((SELECT array_agg(m.table_name ORDER BY m.table_name) FROM "
            f"{q}.etl_table_metrics m WHERE m.run_id = r.run_id AND m.status = 'failed'), '{{}}') "
            f"FROM {q}.etl_runs r ORDER BY r.started_at DESC LIMIT %s",
            (limit,),
        )
        rows = cur.fetchall()
    pg_conn.rollback()
    return [RunSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], tuple(r[9])) for r in rows]


def table_metrics(pg_conn: PgConnection, run_id: str, schema: str = METRICS_SCHEMA) -> list[dict[str, Any]]:
    q = quote_ident(schema, "postgres")
    with pg_conn.cursor() as cur:
        cur.execute(
            f"SELECT table_name, status, mode, rows, rows_changed, bytes, seconds, zero_dates, nul_bytes, "
            f"deleted_rows, missing_rows, changed_rows, ranges_recopied, swept, verification, error "
            f"FROM {q}.etl_table_metrics WHERE run_id = %s "
            "ORDER BY table_name",
            (run_id,),
        )
        names = column_names(cur)
        rows = [dict(zip(names, r, strict=False)) for r in cur.fetchall()]
    pg_conn.rollback()
    return rows


def record_failed_start(
    pg_conn: PgConnection,
    run_id: str,
    flow_name: str,
    message: str,
    *,
    flow_run_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    schema: str = METRICS_SCHEMA,
) -> None:
    """Mark a run that failed before its tables ran (config, block, connection, refused targets) as failed.

    Creates the run row if it is not there yet, so `clinicflow status` shows the message and exits 1.
    """
    ensure_metrics_tables(pg_conn, schema)
    start_run(pg_conn, run_id, flow_name, flow_run_id=flow_run_id, parameters=parameters, schema=schema)
    q = quote_ident(schema, "postgres")
    with pg_conn.cursor() as cur:
        cur.execute(
            f"UPDATE {q}.etl_runs SET finished_at = now(), status = 'failed', message = %s "
            "WHERE run_id = %s AND finished_at IS NULL",
            (message, run_id),
        )
    pg_conn.commit()
