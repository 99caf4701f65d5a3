"""The DDL of the processing schema (:mod:`.store`): data files, results, their dispatch and lease columns.

Every statement is idempotent (``IF NOT EXISTS``): ``store.ensure_tables`` runs them all under an advisory
lock at every start, so a new column reaches an existing database without a migration tool.
"""

from __future__ import annotations

from clinicflow.core.sql import quote_ident

SCHEMA = "processing"
# The live-update channel: every change of a results row commits with a NOTIFY on it.
CHANNEL = "etl_update"


def schema_sql() -> str:
    """The schema's name quoted for SQL text (the ``{s}`` of :data:`DDL`)."""
    return quote_ident(SCHEMA, "postgres")


DDL = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE IF NOT EXISTS {s}.data_files (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        size_bytes bigint NOT NULL,
        sha256 text NOT NULL,
        format text NOT NULL,
        columns jsonb NOT NULL,
        row_count bigint NOT NULL,
        object_name text NOT NULL,
        storage_uri text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS {s}.results (
        id bigserial PRIMARY KEY,
        data_file_id bigint NOT NULL REFERENCES {s}.data_files (id),
        processing_type text NOT NULL,
        parameters jsonb NOT NULL,
        status text NOT NULL DEFAULT 'PENDING'
            CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED')),
        flow_run_id uuid,
        progress real NOT NULL DEFAULT 0,
        result_data jsonb,
        error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz)""",
    "CREATE INDEX IF NOT EXISTS results_status_idx ON {s}.results (status, id)",
    # Task-worker dispatch: the background task run, the worker process that claimed the row and its lease.
    "ALTER TABLE {s}.results ADD COLUMN IF NOT EXISTS task_run_id uuid",
    "ALTER TABLE {s}.results ADD COLUMN IF NOT EXISTS worker text",
    "ALTER TABLE {s}.results ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz",
    "CREATE INDEX IF NOT EXISTS results_type_idx ON {s}.results (processing_type, id)",
    # The outbox: a row is dispatched (its run created in Prefect) after it is written; a dispatcher claims
    # undispatched rows for a while (dispatch_claimed_at) so that two API processes do not send the same row.
    "ALTER TABLE {s}.results ADD COLUMN IF NOT EXISTS dispatched_at timestamptz",
    "ALTER TABLE {s}.results ADD COLUMN IF NOT EXISTS dispatch_claimed_at timestamptz",
    "CREATE INDEX IF NOT EXISTS results_undispatched_idx ON {s}.results (id) "
    "WHERE status = 'PENDING' AND dispatched_at IS NULL",
    "CREATE INDEX IF NOT EXISTS results_task_run_idx ON {s}.results (task_run_id)",
)
