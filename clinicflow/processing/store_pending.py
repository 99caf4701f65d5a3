"""New PENDING results rows (:mod:`.store`'s table): one statement for one row or for a burst of them.

:func:`insert_results` writes the rows and their NOTIFYs with one ``INSERT ... SELECT FROM unnest(...)``
and one commit (``store.insert_result`` is its one-row form); the API's group commit
(:class:`clinicflow.service.submit.GroupCommit`) runs the same statement on its event loop's asyncpg
connections with :func:`insert_results_async`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clinicflow.core.dbapi import PgConnection
from clinicflow.processing.store_schema import CHANNEL, schema_sql


@dataclass(frozen=True)
class NewRow:
    data_file_id: int
    processing_type: str
    parameters: dict[str, Any]
    # The id its background task run will be created with (None: a deployment run, or not known yet).
    task_run_id: str | None


def _insert_sql(marks: Sequence[str]) -> str:
    """The statement with the driver's five parameter marks (ids, types, parameters, task runs, channel)."""
    ids, types, parameters, task_runs, channel = marks
    table = f"{schema_sql()}.results"
    # The ids are drawn first (src is evaluated once), so each row gets its own id whatever order the
    # INSERT writes them in; the NOTIFYs are sent at the commit, with the rows.
    return (
        f"WITH src AS MATERIALIZED (SELECT nextval(pg_get_serial_sequence('{table}', 'id')) AS id, "
        f"u.f, u.t, u.p, u.r, u.n FROM unnest({ids}::bigint[], {types}::text[], {parameters}::text[], "
        f"{task_runs}::uuid[]) WITH ORDINALITY AS u(f, t, p, r, n)), "
        f"ins AS (INSERT INTO {table} (id, data_file_id, processing_type, parameters, task_run_id) "
        "SELECT id, f, t, p::jsonb, r FROM src RETURNING id) "
        f"SELECT src.id, pg_notify({channel}, json_build_object('id', src.id, 'status', 'PENDING', "
        "'progress', 0)::text) FROM src ORDER BY src.n"
    )


INSERT_SQL = _insert_sql(["%s"] * 5)
# The same statement for asyncpg (numbered marks); the group commit prepares it on each connection.
INSERT_SQL_ASYNCPG = _insert_sql([f"${n}" for n in range(1, 6)])


def _parameters(rows: Sequence[NewRow]) -> tuple[list[int], list[str], list[str], list[str | None], str]:
    return (
        [r.data_file_id for r in rows],
        [r.processing_type for r in rows],
        [json.dumps(r.parameters) for r in rows],
        [r.task_run_id for r in rows],
        CHANNEL,
    )


def insert_results(conn: PgConnection, rows: Sequence[NewRow]) -> list[int]:
    """Insert ``rows`` PENDING in one statement and commit; their ids in order."""
    if not rows:
        return []
    with conn.cursor() as cur:
        cur.execute(INSERT_SQL, _parameters(rows))
        found = cur.fetchall()
    conn.commit()
    return [int(record[0]) for record in found]


async def insert_results_async(conn: Any, rows: Sequence[NewRow]) -> list[int]:
    """:func:`insert_results` on an asyncpg connection (outside a transaction: the statement commits)."""
    if not rows:
        return []
    found = await conn.fetch(INSERT_SQL_ASYNCPG, *_parameters(rows))
    return [int(record[0]) for record in found]
