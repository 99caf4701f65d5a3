"""`clinicflow status --json` after a failed ingestion run and a failed processing job; its exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clinicflow.cli import app
from clinicflow.connectors.objectstore.stores import LocalStore
from tests.integration.ingest.conftest import referral, write_tree


@pytest.fixture
def analytics_env(ingest_db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_DATABASE", ingest_db.database)
    return ingest_db


def status(*args: str, scope: tuple[str, ...] = ("ingest", "processing", "nightly")) -> tuple[int, Any]:
    # The database-backed subsystems only: the session's Prefect server holds other tests' pipeline runs.
    args = ("--json", *(f"--subsystem={s}" for s in scope), *args)
    result = CliRunner().invoke(app, ["status", *args], catch_exceptions=False)
    return result.exit_code, json.loads(result.output) if result.output.strip().startswith("{") else result.output


def test_status_json_shows_a_failed_ingestion_run_and_a_failed_processing_job(
    prefect_server: None, analytics_env: Any, tmp_path: Path
) -> None:
    from clinicflow.processing import store
    from clinicflow.processing.files import store_upload
    from clinicflow.processing.runner import process_result
    from flows.ingest_files import ingest_files

    code, report = status()
    assert code == 2
    assert report["failed"] == []  # nothing recorded yet

    write_tree(tmp_path, {f"in/r{n}.txt": referral(n) for n in range(4)})
    ok = ingest_files(str(tmp_path / "in" / "*.txt"), batch_size=2, max_error_rate=0.5, return_state=True)
    assert ok.is_completed(), ok.message
    code, report = status()
    assert code == 0
    assert report["subsystems"]["ingest"]["runs"][0]["status"] == "ok"

    write_tree(tmp_path, {f"new/r{n}.txt": referral(n + 10) for n in range(4)})
    failed = ingest_files(
        str(tmp_path / "new" / "*.txt"),
        batch_size=2,
        fail_percentage=100,
        seed=3,
        max_error_rate=0.1,
        return_state=True,
    )
    assert failed.is_failed()
    code, report = status()
    ingest = report["subsystems"]["ingest"]
    assert code == 1
    assert report["failed"] == ["ingest"]
    assert ingest["runs"][0]["status"] == "failed"
    assert "max_error_rate" in ingest["runs"][0]["message"]
    assert ingest["runs"][0]["run_id"] == str(failed.state_details.flow_run_id)
    assert sum(r["open"] for r in ingest["open_dead_letters"]) >= 1
    assert ingest["open_dead_letters"][0]["reason"]

    conn = analytics_env.connect()
    try:
        store.ensure_tables(conn)
        csv = tmp_path / "mixed.csv"
        csv.write_text("t,v\n1,2.5\n2,oops\n", encoding="utf-8")
        bucket = LocalStore(tmp_path / "bucket")
        data_file = store_upload(conn, bucket, csv, csv.name)
        job = store.insert_result(conn, data_file["id"], "peak_detection", {"column": "v"})
    finally:
        conn.close()
    with pytest.raises(Exception, match="not numeric"):
        process_result(analytics_env.connect, bucket, job, flow_run_id=None, scripts_dir=tmp_path)
    code, report = status()
    processing = report["subsystems"]["processing"]
    assert code == 1
    assert report["failed"] == ["ingest", "processing"]
    assert processing["jobs_by_status"] == {"FAILED": 1}
    assert processing["jobs"][0]["id"] == job
    assert "not numeric" in processing["jobs"][0]["error"]

    code, report = status(scope=("processing",))
    assert code == 1
    assert list(report["subsystems"]) == ["processing"]
    code, report = status(scope=("processing,ingest",))  # a comma list, as --tables takes one
    assert list(report["subsystems"]) == ["ingest", "processing"]
    code, report = status(scope=("nightly",))  # narrowed to a subsystem with nothing recorded
    assert code == 2
    assert report["failed"] == []
    code, out = status(scope=("nope",))
    assert code == 2
    assert "unknown subsystem" in out
