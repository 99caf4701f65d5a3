"""The submit path's group commit and the connection pool (the task workers' and the API's), against real
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import select
import uuid
from pathlib import Path
from typing import Any

import pytest

from blocks.databases import PostgresServer
from clinicflow.connectors.postgres.pool import ConnectionPool
from clinicflow.processing import store, store_pending
from clinicflow.processing.store_pending import NewRow
from clinicflow.service.submit import GroupCommit, KnownFiles
from tests.integration.processing.conftest import pg_rows


def a_data_file(server: PostgresServer) -> int:
    conn = server.connect()
    try:
        store.ensure_tables(conn)
        return int(
            store.insert_data_file(
                conn,
                name="x.csv",
                size_bytes=1,
                sha256="0",
                fmt="csv",
                columns=[],
                row_count=1,
                object_name="x",
                storage_uri="file:///x",
            )["id"]
        )
    finally:
        conn.close()


def listening(server: PostgresServer) -> Any:
    """A connection listening on the live-update channel."""
    listener = server.connect()
    listener.autocommit = True
    with listener.cursor() as cur:
        cur.execute(f"LISTEN {store.CHANNEL}")
    return listener


def notified(listener: Any, count: int) -> list[dict]:
    """The first ``count`` payloads ``listener`` hears (fewer if none comes for 5 s); the listener is closed."""
    heard: list[dict] = []
    while len(heard) < count and select.select([listener], [], [], 5)[0]:
        listener.poll()
        heard += [json.loads(n.payload) for n in listener.notifies]
        listener.notifies.clear()
    listener.close()
    return heard


def written_rows(server: PostgresServer) -> dict[int, tuple[dict, str | None, str]]:
    """Every results row: {id: (parameters, task run id, status)}."""
    return {
        i: (json.loads(p), t, status)
        for i, p, t, status in pg_rows(
            server, "SELECT id, parameters::text, task_run_id::text, status FROM processing.results"
        )
    }


def test_concurrent_requests_share_commits_each_gets_its_own_row(analytics: PostgresServer) -> None:
    file_id = a_data_file(analytics)
    listener = listening(analytics)
    rows = [NewRow(file_id, "rolling_mean", {"window": i}, str(uuid.uuid4()) if i % 3 else None) for i in range(120)]

    async def submit() -> tuple[list[int], list[int | BaseException]]:
        group = GroupCommit(analytics, writers=2)
        await group.start()
        try:
            ids = await asyncio.gather(*(group.insert(row) for row in rows))
            # A row whose data file does not exist fails alone; the row written beside it is not lost.
            mixed = await asyncio.gather(
                group.insert(NewRow(10**12, "rolling_mean", {}, None)),
                group.insert(NewRow(file_id, "rolling_mean", {"window": 2}, None)),
                return_exceptions=True,
            )
            return ids, mixed
        finally:
            await group.close()

    ids, mixed = asyncio.run(submit())
    assert len(set(ids)) == len(rows)
    written = written_rows(analytics)
    for result_id, row in zip(ids, rows, strict=True):
        assert written[result_id] == (row.parameters, row.task_run_id, "PENDING")
    assert isinstance(mixed[0], Exception)
    assert "foreign key" in str(mixed[0])
    assert isinstance(mixed[1], int)
    assert written[mixed[1]][2] == "PENDING"
    heard = notified(listener, len(rows) + 1)
    assert {p["id"] for p in heard if p["status"] == "PENDING"} == {*ids, mixed[1]}


def test_known_files_are_read_once_for_a_burst() -> None:
    reads: list[int] = []

    async def read(file_id: int) -> dict | None:
        reads.append(file_id)
        await asyncio.sleep(0.01)
        return {"id": file_id} if file_id == 1 else None

    async def burst() -> list[dict | None]:
        files = KnownFiles(read)
        return await asyncio.gather(*(files.get(1) for _ in range(50)), files.get(2), files.get(2), files.get(1))

    found = asyncio.run(burst())
    assert found[:50] == [{"id": 1}] * 50
    assert found[50:] == [None, None, {"id": 1}]
    assert reads == [1, 2]


def test_kept_connections_are_reused_and_a_broken_one_is_not(analytics: PostgresServer, tmp_path: Path) -> None:
    kept = ConnectionPool(analytics.connect, keep=2)
    first = kept.connect()
    with first.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    first.close()
    first.close()  # twice (the runner closes in two places): put back once
    again = kept.connect()
    with again.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] == pid
    with again.cursor() as cur, pytest.raises(Exception, match="division by zero"):
        cur.execute("SELECT 1 / 0")
    again.close()  # rolled back, then kept
    third = kept.connect()
    with third.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] == pid
    third._conn.close()  # as a connection the server dropped
    assert third.closed
    third.close()
    fourth = kept.connect()
    with fourth.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] != pid
    fourth.close()
    kept.close()


def test_a_pool_block_is_rolled_back_and_a_terminated_backend_dropped(analytics: PostgresServer) -> None:
    pool = ConnectionPool(analytics.connect, size=1)

    def backend(conn: Any) -> int:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return int(cur.fetchone()[0])

    with pool.connection() as conn:
        pid = backend(conn)  # left in a transaction: rolled back on the way out
    with pool.connection() as conn:
        assert conn.get_transaction_status() == 0
        assert backend(conn) == pid
    with pytest.raises(Exception, match="division by zero"), pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 / 0")
    with pool.connection() as conn:
        assert backend(conn) == pid
    admin = analytics.connect()
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        admin.close()
    with pytest.raises(Exception, match=r"terminat|closed"), pool.connection() as conn:
        backend(conn)
    with pool.connection() as conn:
        assert backend(conn) != pid
    pool.close()


def test_insert_results_writes_a_burst_in_one_commit_and_insert_result_one_row(analytics: PostgresServer) -> None:
    file_id = a_data_file(analytics)
    listener = listening(analytics)
    rows = [NewRow(file_id, "rolling_mean", {"window": i}, str(uuid.uuid4()) if i % 2 else None) for i in range(5)]
    conn = analytics.connect()
    try:
        assert store_pending.insert_results(conn, []) == []
        ids = store_pending.insert_results(conn, rows)
        single = store.insert_result(conn, file_id, "peak_detection", {"column": "v"}, str(uuid.uuid4()))
        with pytest.raises(Exception, match="foreign key"):
            store_pending.insert_results(conn, [rows[0], NewRow(10**12, "rolling_mean", {}, None)])
        conn.rollback()
    finally:
        conn.close()
    assert ids == sorted(ids)
    assert len(set(ids)) == len(rows)
    assert single > max(ids)
    written = written_rows(analytics)
    for result_id, row in zip(ids, rows, strict=True):
        assert written[result_id] == (row.parameters, row.task_run_id, "PENDING")
    assert written[single][0] == {"column": "v"}
    assert written[single][2] == "PENDING"
    assert len(written) == len(rows) + 1  # the failed burst wrote nothing
    assert notified(listener, len(rows) + 1) == [{"id": i, "status": "PENDING", "progress": 0} for i in [*ids, single]]
