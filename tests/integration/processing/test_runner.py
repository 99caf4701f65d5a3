"""The runner and the results table without Prefect: real PostgreSQL, a local folder bucket."""

from __future__ import annotations

import contextlib
import json
import select
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from blocks.databases import PostgresServer
from clinicflow.connectors.objectstore.stores import LocalStore
from clinicflow.processing import outbox, store
from clinicflow.processing.base import InvalidRequest
from clinicflow.processing.files import register_uri, store_upload
from clinicflow.processing.runner import process_result
from tests.integration.processing.conftest import pg_rows


def upload(server: PostgresServer, bucket: LocalStore, path: Path, name: str | None = None) -> dict:
    conn = server.connect()
    try:
        return store_upload(conn, bucket, path, name or path.name)
    finally:
        conn.close()


def submit(server: PostgresServer, file_id: int, kind: str, params: dict) -> int:
    conn = server.connect()
    try:
        return store.insert_result(conn, file_id, kind, params)
    finally:
        conn.close()


def test_a_rolling_mean_request_ends_completed_with_notifications(
    analytics: PostgresServer, bucket: LocalStore, tmp_path: Path
) -> None:
    path = tmp_path / "hr.csv"
    frame = pd.DataFrame({"hr": np.arange(100, dtype=float) % 7})
    frame.to_csv(path, index=False)
    data_file = upload(analytics, bucket, path, "../../hr.csv")
    assert data_file["name"] == "hr.csv"
    assert data_file["row_count"] == 100
    assert data_file["format"] == "csv"
    assert data_file["storage_uri"] == bucket.root.as_uri() + "/" + data_file["object_name"]
    assert bucket.exists(data_file["object_name"])

    listener = analytics.connect()
    listener.autocommit = True
    with listener.cursor() as cur:
        cur.execute(f"LISTEN {store.CHANNEL}")
    result_id = submit(analytics, data_file["id"], "rolling_mean", {"window": 5})
    summary = process_result(analytics.connect, bucket, result_id, flow_run_id=None, scripts_dir=tmp_path)
    assert summary["status"] == "COMPLETED"
    events: list[dict] = []
    while len(events) < 3 and select.select([listener], [], [], 5)[0]:
        listener.poll()
        events += [json.loads(n.payload) for n in listener.notifies]
        listener.notifies.clear()
    listener.close()
    assert [e["status"] for e in events if e["id"] == result_id] == ["PENDING", "PROCESSING", "COMPLETED"]

    conn = analytics.connect()
    row = store.get_result(conn, result_id)
    conn.close()
    assert row["status"] == "COMPLETED"
    assert row["progress"] == 1
    assert row["error"] is None
    expected = frame["hr"].rolling(5).mean().to_numpy()
    got = np.array(row["result_data"]["series"]["hr"]["rolling_mean"], dtype=float)
    np.testing.assert_allclose(got, expected, equal_nan=True)
    # A finished row never changes again (a late hook, a retried task).
    conn = analytics.connect()
    assert store.mark_ended(conn, result_id, "CRASHED", "late") is None
    assert store.mark_processing(conn, result_id, None) is None
    conn.close()
    assert pg_rows(analytics, "SELECT status FROM processing.results WHERE id = %s", (result_id,)) == [("COMPLETED",)]


def test_a_bad_file_ends_failed_with_the_reason(analytics: PostgresServer, bucket: LocalStore, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("t,v\n1,2.5\n2,oops\n3,4\n", encoding="utf-8")
    data_file = upload(analytics, bucket, path)
    result_id = submit(analytics, data_file["id"], "peak_detection", {"column": "v"})
    with pytest.raises(Exception, match="column 'v' is not numeric"):
        process_result(analytics.connect, bucket, result_id, flow_run_id=None, scripts_dir=tmp_path)
    ((status, error),) = pg_rows(analytics, "SELECT status, error FROM processing.results WHERE id = %s", (result_id,))
    assert status == "FAILED"
    assert "column 'v' is not numeric (first bad value at row 1)" in error


def test_a_deleted_row_is_skipped(analytics: PostgresServer, bucket: LocalStore, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("v\n1\n2\n", encoding="utf-8")
    result_id = submit(analytics, upload(analytics, bucket, path)["id"], "data_quality", {})
    conn = analytics.connect()
    assert store.delete_result(conn, result_id)
    conn.close()
    summary = process_result(analytics.connect, bucket, result_id, flow_run_id=None, scripts_dir=tmp_path)
    assert summary == {"result_id": result_id, "status": "skipped", "reason": "result is deleted"}


def test_registering_a_uri_only_inside_the_bucket(
    analytics: PostgresServer, bucket: LocalStore, tmp_path: Path
) -> None:
    source = tmp_path / "p.parquet"
    pd.DataFrame({"x": [1.0, 2.0, 3.0]}).to_parquet(source)
    bucket.write("incoming/p.parquet", source)
    conn = analytics.connect()
    try:
        row = register_uri(conn, bucket, bucket.root.as_uri() + "/incoming/p.parquet", tmp_path)
        assert (row["format"], row["row_count"], row["object_name"]) == ("parquet", 3, "incoming/p.parquet")
        for uri in ("file:///etc/passwd", bucket.root.as_uri() + "/../x.csv", bucket.root.as_uri() + "/nope.csv"):
            with pytest.raises(InvalidRequest) as error:
                register_uri(conn, bucket, uri, tmp_path)
            assert error.value.field == "uri"
    finally:
        conn.close()


def test_the_reconciler_ends_rows_whose_flow_run_is_over(
    analytics: PostgresServer, bucket: LocalStore, tmp_path: Path
) -> None:
    path = tmp_path / "a.csv"
    path.write_text("v\n1\n2\n", encoding="utf-8")
    file_id = upload(analytics, bucket, path)["id"]
    ids = [submit(analytics, file_id, "data_quality", {}) for _ in range(4)]
    conn = analytics.connect()
    try:
        for i, result_id in enumerate(ids):
            store.set_flow_run_id(conn, result_id, f"00000000-0000-0000-0000-00000000000{i}")
        store.mark_processing(conn, ids[1], None)
        assert store.stale_active_runs(conn, 3600) == {}
        with conn.cursor() as cur:
            cur.execute("UPDATE processing.results SET updated_at = now() - interval '10 minutes'")
        conn.commit()
        stale = store.stale_active_runs(conn, 60)
        assert sorted(stale) == ids
        ended = store.reconcile_ended_runs(conn, {ids[0]: "CRASHED", ids[1]: "COMPLETED", ids[2]: "RUNNING"})
        assert [(t.id, t.status) for t in ended] == [(ids[0], "CRASHED"), (ids[1], "FAILED")]
    finally:
        conn.close()
    rows = dict(pg_rows(analytics, "SELECT id, status FROM processing.results"))
    assert [rows[i] for i in ids] == ["CRASHED", "FAILED", "PENDING", "PENDING"]


def test_files_are_listed_newest_first(analytics: PostgresServer, bucket: LocalStore, tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv", "c.csv"):
        (tmp_path / name).write_text("v\n1\n", encoding="utf-8")
        upload(analytics, bucket, tmp_path / name)
    conn = analytics.connect()
    try:
        rows, total = store.list_data_files(conn, limit=2, offset=0)
    finally:
        conn.close()
    assert total == 3
    assert [r["name"] for r in rows] == ["c.csv", "b.csv"]


def test_a_result_over_the_limit_fails_and_dead_runs_folders_are_swept(
    analytics: PostgresServer, bucket: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinicflow.processing.base import ProcessingError
    from clinicflow.processing.runner import WORKDIR_PREFIX

    work = tmp_path / "work"
    work.mkdir()
    dead = work / f"{WORKDIR_PREFIX}999999999-x"  # a pid no process has: a run killed before cleaning up
    dead.mkdir()
    (dead / "data.csv").write_text("patient data")
    path = tmp_path / "long.csv"
    pd.DataFrame({"v": np.arange(60_000, dtype=float)}).to_csv(path, index=False)
    data_file = upload(analytics, bucket, path)
    monkeypatch.setenv("CLINICFLOW_PROCESSING_MAX_RESULT_MB", "1")
    result_id = submit(analytics, data_file["id"], "rolling_mean", {"window": 3, "max_points": 60_000})
    with pytest.raises(ProcessingError, match="larger than the limit of 1048576 bytes"):
        process_result(analytics.connect, bucket, result_id, flow_run_id=None, scripts_dir=tmp_path, workdir=work)
    (row,) = pg_rows(analytics, "SELECT status, error, result_data FROM processing.results WHERE id = %s", (result_id,))
    assert row[0] == "FAILED"
    assert "CLINICFLOW_PROCESSING_MAX_RESULT_MB" in row[1]
    assert row[2] is None
    assert list(work.iterdir()) == []  # the dead run's folder swept, this run's removed


def test_a_custom_script_stops_when_its_row_is_deleted(
    analytics: PostgresServer, bucket: LocalStore, tmp_path: Path
) -> None:
    """A task worker runs the script itself: a delete kills it (it writes no progress), the worker goes on."""
    import os
    import threading
    import time

    from tests.integration.processing.conftest import SCRIPTS
    from tests.integration.processing.hostile_scripts import marker, processes_named

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "waits.py").write_text(SCRIPTS["waits"], encoding="utf-8")
    path = tmp_path / "w.csv"
    pd.DataFrame({"v": np.arange(20.0)}).to_csv(path, index=False)
    data_file = upload(analytics, bucket, path)
    name = marker("rd")
    result_id = submit(
        analytics, data_file["id"], "custom", {"script": "waits", "params": {"marker": name}, "timeout_seconds": 600}
    )
    summary: dict = {}
    thread = threading.Thread(
        target=lambda: summary.update(
            process_result(
                analytics.connect,
                bucket,
                result_id,
                flow_run_id=None,
                scripts_dir=scripts,
                worker=f"test-{os.getpid()}",
            )
        )
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not processes_named(name):
        assert time.monotonic() < deadline, f"the script did not start: {summary}"
        assert thread.is_alive(), f"the script did not start: {summary}"
        time.sleep(0.1)
    conn = analytics.connect()
    try:
        assert store.delete_result(conn, result_id)
    finally:
        conn.close()
    thread.join(60)
    assert not thread.is_alive(), summary
    assert summary["status"] == "stopped", summary
    deadline = time.monotonic() + 10
    while processes_named(name) and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGKILL lands asynchronously
    assert processes_named(name) == []


def test_undispatched_rows_are_claimed_once_until_the_claim_runs_out(
    analytics: PostgresServer, bucket: LocalStore, tmp_path: Path
) -> None:
    """The outbox: a written row is claimed by one dispatcher; a claim that ran out (the dispatcher stopped, or
    its send failed) lets it be claimed again; a dispatched row never is; a row is found by its task run."""
    path = tmp_path / "s.csv"
    pd.DataFrame({"v": np.arange(10, dtype=float)}).to_csv(path, index=False)
    data_file = upload(analytics, bucket, path)
    conn = analytics.connect()
    try:
        sent = store.insert_result(
            conn, data_file["id"], "rolling_mean", {"window": 2}, "00000000-0000-4000-8000-000000000001"
        )
        failed = store.insert_result(
            conn, data_file["id"], "rolling_mean", {"window": 2}, "00000000-0000-4000-8000-000000000002"
        )
        claimed = outbox.claim_undispatched(conn, claim_seconds=30)
        assert [(r.id, r.task_run_id, r.row_count) for r in claimed] == [
            (sent, "00000000-0000-4000-8000-000000000001", 10),
            (failed, "00000000-0000-4000-8000-000000000002", 10),
        ]
        assert outbox.claim_undispatched(conn, claim_seconds=30) == []  # a second dispatcher finds nothing
        outbox.mark_dispatched(conn, sent)
        # The claim on `failed` runs out (claim_seconds 0): claimed again, exactly once more.
        assert [r.id for r in outbox.claim_undispatched(conn, claim_seconds=0)] == [failed]
        assert outbox.claim_undispatched(conn, claim_seconds=30) == []
        outbox.mark_dispatched(conn, failed)
        assert outbox.claim_undispatched(conn, claim_seconds=0) == []
        assert outbox.result_for_task_run(conn, "00000000-0000-4000-8000-000000000002") == failed
        assert outbox.result_for_task_run(conn, "00000000-0000-4000-8000-000000000009") is None
        row = store.get_result(conn, sent)
        assert row is not None
        assert row["dispatched_at"]
        assert row["task_run_id"].endswith("0001")
    finally:
        conn.close()


def test_a_background_row_is_found_by_its_task_run_id(
    analytics: PostgresServer, bucket: LocalStore, tmp_path: Path
) -> None:
    path = tmp_path / "s.csv"
    pd.DataFrame({"v": np.arange(50, dtype=float)}).to_csv(path, index=False)
    data_file = upload(analytics, bucket, path)
    conn = analytics.connect()
    try:
        result_id = store.insert_result(
            conn, data_file["id"], "rolling_mean", {"window": 3}, "00000000-0000-4000-8000-0000000000aa"
        )
    finally:
        conn.close()
    tracked: list[int] = []

    @contextlib.contextmanager
    def track(row_id: int) -> Iterator[None]:
        tracked.append(row_id)
        yield

    def run(task_run_id: str, **extra: Any) -> dict[str, Any]:
        return process_result(
            analytics.connect,
            bucket,
            None,
            flow_run_id=None,
            scripts_dir=tmp_path,
            worker="test-worker",
            task_run_id=task_run_id,
            **extra,
        )

    summary = run("00000000-0000-4000-8000-0000000000aa", track=track)
    assert summary["status"] == "COMPLETED"
    assert tracked == [result_id]
    again = run("00000000-0000-4000-8000-0000000000aa", track=track)
    assert again["status"] == "skipped"  # delivered twice: run once
    gone = run("00000000-0000-4000-8000-0000000000bb")
    assert gone["status"] == "skipped"
    assert "no result" in gone["reason"]
