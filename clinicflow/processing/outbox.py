"""The results table as the outbox (:mod:`clinicflow.service.dispatch`): claim the rows whose run is not
created yet, mark them dispatched once it is, find a row by its background task run."""

from __future__ import annotations

from dataclasses import dataclass

from clinicflow.core.dbapi import PgConnection
from clinicflow.processing.store_schema import schema_sql as _s


@dataclass(frozen=True)
class Undispatched:
    id: int
    task_run_id: str | None
    row_count: int


def claim_undispatched(conn: PgConnection, claim_seconds: float, limit: int = 500) -> list[Undispatched]:
    """PENDING rows whose run is not created yet and that no dispatcher claimed in the last ``claim_seconds``
    (oldest first), now claimed by the caller: the rows just written, and those whose dispatch failed or
    whose dispatcher stopped (their claim ran out)."""
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {_s()}.results r SET dispatch_claimed_at = now() FROM {_s()}.data_files f "
            f"WHERE r.id IN (SELECT id FROM {_s()}.results WHERE status = 'PENDING' AND dispatched_at IS NULL "
            "AND (dispatch_claimed_at IS NULL OR dispatch_claimed_at < now() - make_interval(secs => %s)) "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) AND f.id = r.data_file_id "
            "RETURNING r.id, r.task_run_id, f.row_count",
            (claim_seconds, limit),
        )
        found = [Undispatched(int(i), None if t is None else str(t), int(n)) for i, t, n in cur.fetchall()]
    conn.commit()
    return sorted(found, key=lambda r: r.id)


def mark_dispatched(
    conn: PgConnection, result_id: int, *, task_run_id: str | None = None, flow_run_id: str | None = None
) -> None:
    """The row's run exists in Prefect: never sent again."""
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {_s()}.results SET dispatched_at = now(), task_run_id = coalesce(%s, task_run_id), "
            "flow_run_id = coalesce(%s, flow_run_id) WHERE id = %s",
            (task_run_id, flow_run_id, result_id),
        )
    conn.commit()


def result_for_task_run(conn: PgConnection, task_run_id: str) -> int | None:
    """The id of the row whose background task run is ``task_run_id`` (None: deleted)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {_s()}.results WHERE task_run_id = %s", (task_run_id,))
        found = cur.fetchone()
    conn.rollback()
    return None if found is None else int(found[0])
