"""Flow ``ingest_files`` end to end: local folder and moto S3 (custom endpoint), artifacts, max_error_rate, SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from clinicflow.ingest.faults import injected_fault
from flows.progress import artifact_key
from tests.integration.ingest.conftest import PNG, pg_rows, referral, write_tree
from tests.integration.ingest.llm_server import LLMServer

REPO = Path(__file__).parents[3]


@pytest.fixture
def ingest_env(ingest_db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_DATABASE", ingest_db.database)
    return ingest_db


def _artifact(key: str) -> Any:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_latest_artifacts()

    return [a for a in asyncio.run(read()) if a.key == key]


def test_flow_on_a_local_folder(prefect_server: None, ingest_env: Any, tmp_path: Path) -> None:
    from flows.ingest_files import ingest_files

    files = {f"in/2024/letter{n}.txt": referral(n) for n in range(6)}
    files |= {
        "in/2024/scan.png": PNG,
        "in/2024/no-id.txt": b"A note with no labelled fields.",
        "in/2023/old.txt": referral(99),
        "in/2024/big.txt": b"x" * 300_000,
        "in/2024/skip.csv": b"a,b\n",
    }
    write_tree(tmp_path, files)
    pattern = str(tmp_path / "in" / "**" / "*.txt")
    state = ingest_files(pattern, batch_size=3, max_file_mb=0.25, max_error_rate=0.5, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert {k: result[k] for k in ("listed", "new", "staged", "extracted", "skipped")} == {
        "listed": 9,
        "new": 9,
        "staged": 8,
        "extracted": 7,
        "skipped": 0,
    }
    assert result["dead_lettered_by_reason"] == {"extract/not-clinical": 1, "read/too-large": 1}
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.medical") == [(7,)]
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.current_medical") == [(7,)]
    (summary,) = _artifact(artifact_key("ingest", "file", str(tmp_path / "in"), "summary"))
    rows = {r["metric"]: r["value"] for r in json.loads(summary.data)}
    assert (rows["staged"], rows["dead-lettered read/too-large"]) == (8, 1)
    assert "MRN0" not in summary.data
    assert "Patient " not in summary.data  # counts and the pattern only, no content

    again = ingest_files(pattern, batch_size=3, max_file_mb=0.25, max_error_rate=1.0)
    assert (again["staged"], again["skipped"], again["extracted"]) == (0, 8, 0)
    assert again["dead_lettered_by_reason"] == {"read/too-large": 1}  # still too large: attempts + 1
    assert pg_rows(ingest_env, "SELECT attempts FROM ingest.dead_letters WHERE reason = 'too-large'") == [(2,)]

    # A changed letter: a new document and Medical row; current_medical shows only the new one.
    (tmp_path / "in/2024/letter0.txt").write_bytes(referral(0).replace(b"MRN000000", b"MRN999999"))
    changed = ingest_files(pattern, batch_size=3, max_file_mb=0.25, max_error_rate=1.0)
    assert (changed["staged"], changed["extracted"], changed["skipped"]) == (1, 1, 7)
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.medical") == [(8,)]
    assert pg_rows(ingest_env, "SELECT patient_id FROM ingest.current_medical WHERE uri LIKE '%%letter0.txt'") == [
        ("MRN999999",)
    ]


def test_flow_on_s3_with_a_custom_endpoint_and_the_error_threshold(
    prefect_server: None, ingest_env: Any, s3_env: Any
) -> None:
    from flows.ingest_files import ingest_files

    client, bucket = s3_env.client(), s3_env.new_bucket()
    for n in range(40):
        client.put_object(Bucket=bucket, Key=f"refs/{n % 4}/r{n:03d}.txt", Body=referral(n))
    state = ingest_files(
        f"s3://{bucket}/refs/**/r0?[0-9].txt",
        batch_size=10,
        fail_percentage=50,
        seed=1,
        max_error_rate=0.2,
        return_state=True,
    )
    assert state.is_failed()
    assert "max_error_rate" in state.message
    # The error rate decides only the run's state: every document that did not fail is staged and extracted.
    keys = sorted(f"refs/{n % 4}/r{n:03d}.txt" for n in range(40))
    failures = sum(injected_fault(1, f"s3://{bucket}/{k}", 50) for k in keys)
    assert failures / 40 > 0.2
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.documents") == [(40 - failures,)]
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.medical") == [(40 - failures,)]
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.dead_letters") == [(failures,)]
    state = ingest_files(f"s3://{bucket}/refs/**/r0?[0-9].txt", batch_size=10, return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["staged"] == failures
    assert state.result()["extracted"] == failures  # the rest is there
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.medical") == [(40,)]
    # The injected failures of the first run were closed by the clean run.
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.dead_letters WHERE status = 'open'") == [(0,)]


def test_synthetic_flow_and_replay_flow(prefect_server: None, ingest_env: Any) -> None:
    from flows.ingest_files import ingest_files, replay_dead_letters

    result = ingest_files(
        "synthetic://logs?count=300&seed=5", batch_size=50, fail_percentage=10, seed=9, max_error_rate=0.3
    )
    assert 10 <= result["dead_lettered"] <= 60
    assert result["staged"] == 300 - result["dead_lettered"]
    replayed = replay_dead_letters()
    assert replayed["replayed"] == result["dead_lettered"]
    assert replayed["still_open"] == 0
    assert pg_rows(ingest_env, "SELECT count(*), count(DISTINCT record_id) FROM ingest.synthetic_records") == [
        (300, 300)
    ]


def _documents(server: Any) -> int:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('ingest.documents')")
            if cur.fetchone()[0] is None:
                return 0
            cur.execute("SELECT count(*) FROM ingest.documents")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_stages_and_extracts_everything_once(
    prefect_server: None, ingest_env: Any, llm_server: LLMServer, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    total = 200
    write_tree(tmp_path, {f"docs/d{n:04d}.txt": referral(n) for n in range(total)})
    llm_server.delay = 0.05
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "CLINICFLOW_CREDENTIALS": "env",
        "CLINICFLOW_ANALYTICS_POSTGRES_DATABASE": ingest_env.database,
        "CLINICFLOW_INGEST_LLM_BASE_URL": llm_server.base_url,
        "CLINICFLOW_INGEST_LLM_MODEL": "test-model",
        "CLINICFLOW_INGEST_LLM_BATCH_SIZE": "5",
    }
    args = [
        sys.executable,
        "-m",
        "clinicflow.cli",
        "ingest",
        "run",
        str(tmp_path / "docs" / "*.txt"),
        "--batch-size",
        "10",
        "--extractor",
        "llm",
    ]
    log = tmp_path / "killed.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 180
        try:
            while True:
                assert time.monotonic() < deadline, f"kill point not reached; see {log}"
                assert proc.poll() is None, f"run ended before the kill point; see {log}"
                if _documents(ingest_env) >= 30:
                    proc.kill()
                    proc.wait(10)
                    break
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    killed_at = _documents(ingest_env)
    assert 0 < killed_at < total, "the kill did not land midway"
    # Batches commit documents and Medical rows together: none half-done.
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.medical") == [(killed_at,)]

    rerun = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert pg_rows(ingest_env, "SELECT count(*), count(DISTINCT uri) FROM ingest.documents") == [(total, total)]
    assert pg_rows(
        ingest_env, "SELECT count(*), count(DISTINCT document_id), count(DISTINCT patient_id) FROM ingest.medical"
    ) == [(total, total, total)]
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.dead_letters") == [(0,)]


def test_flow_on_the_gcs_emulator_and_a_file_replay(
    prefect_server: None, ingest_env: Any, gcs_emulator: Any, tmp_path: Path
) -> None:
    from flows.ingest_files import ingest_files, replay_dead_letters

    bucket = gcs_emulator.new_bucket()
    client = gcs_emulator.client().bucket(bucket)
    for n in range(5):
        client.blob(f"labs/2024/lab{n}.txt").upload_from_string(referral(n))
    client.blob("labs/2024/big.txt").upload_from_string(referral(9) + b"x" * 200_000)
    client.blob("labs/2023/lab9.txt").upload_from_string(referral(9))
    state = ingest_files(
        f"gs://{bucket}/labs/2024/*.txt", batch_size=4, max_file_mb=0.1, max_error_rate=0.5, return_state=True
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert (result["listed"], result["staged"], result["extracted"]) == (6, 5, 5)
    assert result["dead_lettered_by_reason"] == {"read/too-large": 1}
    uris = {r[0] for r in pg_rows(ingest_env, "SELECT uri FROM ingest.documents")}
    assert uris == {f"gs://{bucket}/labs/2024/lab{n}.txt" for n in range(5)}
    # versions are GCS generations
    assert all(r[0].isdigit() for r in pg_rows(ingest_env, "SELECT version FROM ingest.documents"))

    # Replay with a larger limit: the file is read from the bucket by its uri, staged and extracted once.
    replayed = replay_dead_letters(max_file_mb=1)
    assert (replayed["replayed"], replayed["still_open"]) == (1, 0)
    assert replay_dead_letters(max_file_mb=1)["attempted"] == 0  # nothing open any more
    assert pg_rows(ingest_env, "SELECT count(*), count(DISTINCT uri) FROM ingest.documents") == [(6, 6)]
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.medical") == [(6,)]
    assert pg_rows(ingest_env, "SELECT status, attempts FROM ingest.dead_letters") == [("replayed", 1)]
