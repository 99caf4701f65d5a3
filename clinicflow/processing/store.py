"""The results table and the data files table in PostgreSQL (schema ``processing``).

The results row is the canonical record of a processing request. Its status
moves PENDING -> PROCESSING -> COMPLETED | FAILED, or to CRASHED/CANCELLED
from PENDING or PROCESSING; a finished row never changes again, so a late
hook or a retried task cannot overwrite an outcome. Each transition commits
together with ``pg_notify('etl_update', {id, status, progress})``, the
live-update channel the API relays to WebSocket subscribers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from clinicflow.core.dbapi import PgConnection, PgCursor
from clinicflow.processing import store_schema
from clinicflow.processing.store_pending import NewRow, insert_results
from clinicflow.processing.store_schema import CHANNEL as CHANNEL
from clinicflow.processing.store_schema import SCHEMA as SCHEMA
from clinicflow.processing.store_schema import schema_sql as _s

Status = Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
STATUSES: tuple[str, ...] = ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED")
ACTIVE: tuple[str, ...] = ("PENDING", "PROCESSING")
FINAL: tuple[str, ...] = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
# Errors are stored for people to read; a traceback-sized message is cut.
MAX_ERROR_CHARS = 4000

RESULT_COLUMNS = (
    "id",
    "data_file_id",
    "processing_type",
    "parameters",
    "status",
    "flow_run_id",
    "progress",
    "error",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "task_run_id",
    "worker",
    "heartbeat_at",
    "dispatched_at",
)
FILE_COLUMNS = (
    "id",
    "name",
    "size_bytes",
    "sha256",
    "format",
    "columns",
    "row_count",
    "object_name",
    "storage_uri",
    "created_at",
)


@dataclass(frozen=True)
class Transition:
    id: int
    status: str
    progress: float


def ensure_tables(conn: PgConnection) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('clinicflow.processing.ddl'))")
        for statement in store_schema.DDL:
            cur.execute(statement.format(s=_s()))
    conn.commit()


def _row(cur: PgCursor, columns: tuple[str, ...]) -> dict[str, Any] | None:
    found = cur.fetchone()
    return None if found is None else _plain(dict(zip(columns, found, strict=False)))


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready values: timestamps as ISO text, UUIDs as text."""
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = value.isoformat()
        elif key in ("flow_run_id", "task_run_id") and value is not None:
            row[key] = str(value)
    return row


# ---------------------------------------------------------------- data files


def insert_data_file(
    conn: PgConnection,
    *,
    name: str,
    size_bytes: int,
    sha256: str,
    fmt: str,
    columns: list[dict[str, str]],
    row_count: int,
    object_name: str,
    storage_uri: str,
) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {_s()}.data_files (name, size_bytes, sha256, format, columns, row_count, "
            f"object_name, storage_uri) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            f"RETURNING {', '.join(FILE_COLUMNS)}",
            (name, size_bytes, sha256, fmt, json.dumps(columns), row_count, object_name, storage_uri),
        )
        row = _row(cur, FILE_COLUMNS)
    conn.commit()
    assert row is not None
    return row


def get_data_file(conn: PgConnection, file_id: int) -> dict[str, Any] | None:
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(FILE_COLUMNS)} FROM {_s()}.data_files WHERE id = %s", (file_id,))
        row = _row(cur, FILE_COLUMNS)
    conn.rollback()
    return row


def list_data_files(conn: PgConnection, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """A page of data files (newest first) and their total."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {_s()}.data_files")
        total = int(cur.fetchone()[0])
        cur.execute(
            f"SELECT {', '.join(FILE_COLUMNS)} FROM {_s()}.data_files ORDER BY id DESC LIMIT %s OFFSET %s",
            (limit, offset),
        )
        rows = [_plain(dict(zip(FILE_COLUMNS, r, strict=False))) for r in cur.fetchall()]
    conn.rollback()
    return rows, total


# ---------------------------------------------------------------- results


def _notify(cur: PgCursor, result_id: int, status: str, progress: float) -> None:
    cur.execute(
        "SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"id": result_id, "status": status, "progress": progress}))
    )


def insert_result(
    conn: PgConnection,
    data_file_id: int,
    processing_type: str,
    parameters: dict[str, Any],
    task_run_id: str | None = None,
) -> int:
    """A new PENDING row; its id. ``task_run_id``: the id its background task run will be created with."""
    return insert_results(conn, [NewRow(data_file_id, processing_type, parameters, task_run_id)])[0]


def set_flow_run_id(conn: PgConnection, result_id: int, flow_run_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {_s()}.results SET flow_run_id = %s, updated_at = now() WHERE id = %s", (flow_run_id, result_id)
        )
    conn.commit()


def _transition(
    conn: PgConnection, result_id: int, status: str, allowed_from: tuple[str, ...], sets: str, params: tuple[Any, ...]
) -> Transition | None:
    # The change and its NOTIFY in one statement (one round trip), committed together.
    with conn.cursor() as cur:
        cur.execute(
            f"WITH changed AS (UPDATE {_s()}.results SET status = %s, updated_at = now(), {sets} "
            "WHERE id = %s AND status = ANY(%s) RETURNING id, status, progress) "
            "SELECT id, status, progress, pg_notify(%s, json_build_object('id', id, 'status', status, "
            "'progress', progress)::text) FROM changed",
            (status, *params, result_id, list(allowed_from), CHANNEL),
        )
        found = cur.fetchone()
    conn.commit()
    return None if found is None else Transition(int(found[0]), str(found[1]), float(found[2]))


def mark_processing(conn: PgConnection, result_id: int, flow_run_id: str | None) -> Transition | None:
    """PENDING -> PROCESSING (also PROCESSING again for the same row: a retried start). None if not allowed."""
    return _transition(
        conn,
        result_id,
        "PROCESSING",
        ACTIVE,
        "started_at = coalesce(started_at, now()), flow_run_id = coalesce(%s, flow_run_id)",
        (flow_run_id,),
    )


def claim(conn: PgConnection, result_id: int, worker: str, task_run_id: str | None) -> Transition | None:
    """PENDING -> PROCESSING for one task worker, with its first heartbeat. None when the row is not PENDING:
    a second delivery of the same task run, a row cancelled or deleted meanwhile, never a second run."""
    return _transition(
        conn,
        result_id,
        "PROCESSING",
        ("PENDING",),
        "started_at = now(), worker = %s, heartbeat_at = now(), task_run_id = coalesce(%s, task_run_id)",
        (worker, task_run_id),
    )


def renew_leases(conn: PgConnection, result_ids: list[int], worker: str) -> None:
    """Renew the lease of the rows ``worker`` is running (no NOTIFY: nothing a viewer sees changes)."""
    if not result_ids:
        return
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {_s()}.results SET heartbeat_at = now() WHERE id = ANY(%s) AND worker = %s "
            "AND status = 'PROCESSING'",
            (result_ids, worker),
        )
    conn.commit()


@dataclass(frozen=True)
class Reaped:
    id: int
    task_run_id: str | None
    error: str


def reap_lost(conn: PgConnection, lease_seconds: float) -> list[Reaped]:
    """PROCESSING rows of a task worker whose lease ran out (the process was killed or its host lost) -> CRASHED.

    Called by the API and by every task worker, so a crash is noticed while anything is alive.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {_s()}.results SET status = 'CRASHED', updated_at = now(), finished_at = now(), "
            "error = format('task worker %%s stopped renewing its lease (last heartbeat %%s): '"
            "'the process was killed or its host lost', worker, to_char(heartbeat_at, "
            "'YYYY-MM-DD\"T\"HH24:MI:SSOF')) "
            "WHERE status = 'PROCESSING' AND worker IS NOT NULL "
            "AND heartbeat_at < now() - make_interval(secs => %s) RETURNING id, progress, task_run_id, error",
            (lease_seconds,),
        )
        ended = []
        for result_id, progress, task_run_id, error in cur.fetchall():
            _notify(cur, int(result_id), "CRASHED", float(progress))
            ended.append(Reaped(int(result_id), None if task_run_id is None else str(task_run_id), str(error)))
    conn.commit()
    return ended


def set_progress(conn: PgConnection, result_id: int, progress: float) -> Transition | None:
    return _transition(conn, result_id, "PROCESSING", ("PROCESSING",), "progress = %s", (max(0.0, min(1.0, progress)),))


def mark_completed(conn: PgConnection, result_id: int, result_data: dict[str, Any] | str) -> Transition | None:
    """PROCESSING -> COMPLETED with the result (a dict, or its JSON text when the caller has it already)."""
    text = result_data if isinstance(result_data, str) else json.dumps(result_data, allow_nan=False)
    return _transition(
        conn,
        result_id,
        "COMPLETED",
        ("PROCESSING",),
        "progress = 1, result_data = %s, error = NULL, finished_at = now()",
        (text,),
    )


def mark_ended(conn: PgConnection, result_id: int, status: str, error: str) -> Transition | None:
    """PENDING/PROCESSING -> FAILED, CRASHED or CANCELLED with the reason; None if the row already ended."""
    if status not in ("FAILED", "CRASHED", "CANCELLED"):
        raise ValueError(f"not an end status: {status!r}")
    return _transition(conn, result_id, status, ACTIVE, "error = %s, finished_at = now()", (error[:MAX_ERROR_CHARS],))


def get_job(conn: PgConnection, result_id: int) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """(the row without its result, its data file or None) in one query; None when the row is gone."""
    with conn.cursor() as cur:
        selected = [f"r.{c}" for c in RESULT_COLUMNS] + [f"f.{c}" for c in FILE_COLUMNS]
        cur.execute(
            f"SELECT {', '.join(selected)} FROM {_s()}.results r "
            f"LEFT JOIN {_s()}.data_files f ON f.id = r.data_file_id WHERE r.id = %s",
            (result_id,),
        )
        found = cur.fetchone()
    conn.rollback()
    if found is None:
        return None
    row = _plain(dict(zip(RESULT_COLUMNS, found[: len(RESULT_COLUMNS)], strict=True)))
    data_file = _plain(dict(zip(FILE_COLUMNS, found[len(RESULT_COLUMNS) :], strict=True)))
    return row, (data_file if data_file["id"] is not None else None)


def get_result(conn: PgConnection, result_id: int, *, with_data: bool = True) -> dict[str, Any] | None:
    columns = RESULT_COLUMNS + (("result_data",) if with_data else ())
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM {_s()}.results WHERE id = %s", (result_id,))
        row = _row(cur, columns)
    conn.rollback()
    return row


def list_results(
    conn: PgConnection,
    *,
    status: str | None = None,
    processing_type: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of rows (newest first, without result_data) and the total that match the filters."""
    where, params = [], []
    if status is not None:
        where.append("status = %s")
        params.append(status)
    if processing_type is not None:
        where.append("processing_type = %s")
        params.append(processing_type)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {_s()}.results{clause}", params)
        total = int(cur.fetchone()[0])
        cur.execute(
            f"SELECT {', '.join(RESULT_COLUMNS)} FROM {_s()}.results{clause} ORDER BY id DESC LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        rows = [_plain(dict(zip(RESULT_COLUMNS, r, strict=False))) for r in cur.fetchall()]
    conn.rollback()
    return rows, total


def delete_result(conn: PgConnection, result_id: int) -> bool:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {_s()}.results WHERE id = %s RETURNING id", (result_id,))
        deleted = cur.fetchone() is not None
        if deleted:
            _notify(cur, result_id, "DELETED", 0.0)
    conn.commit()
    return deleted


def stale_active_runs(conn: PgConnection, older_than_seconds: float) -> dict[int, str]:
    """Active rows with a flow run whose row has not moved for ``older_than_seconds``: {row id: flow run id}."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT id, flow_run_id FROM {_s()}.results WHERE status = ANY(%s) AND flow_run_id IS NOT NULL "
            "AND updated_at < now() - make_interval(secs => %s) ORDER BY id LIMIT 1000",
            (list(ACTIVE), older_than_seconds),
        )
        found = {int(i): str(f) for i, f in cur.fetchall()}
    conn.rollback()
    return found


# A flow run's final state -> the row's status when the run ended without ending its row.
_RUN_END_STATUS = {"CRASHED": "CRASHED", "FAILED": "FAILED", "CANCELLED": "CANCELLED", "COMPLETED": "FAILED"}


def reconcile_ended_runs(conn: PgConnection, run_states: dict[int, str]) -> list[Transition]:
    """End rows whose flow run is over ({row id: Prefect state type}) though the row is still active.

    The safety net behind the flow's state hooks (a hook that could not run:
    a node lost with its pod, the database unreachable at that moment).
    """
    ended = []
    for result_id, state_type in run_states.items():
        status = _RUN_END_STATUS.get(state_type.upper())
        if status is None:
            continue
        done = mark_ended(
            conn,
            result_id,
            status,
            f"flow run ended {state_type.upper()} without ending this row (found by the reconciler)",
        )
        if done is not None:
            ended.append(done)
    return ended
