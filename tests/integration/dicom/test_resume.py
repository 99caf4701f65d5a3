"""A run killed (SIGKILL) midway, twice, and rerun gives the same bucket and CSV as a clean run,
with no object uploaded twice."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.dicom.conftest import create_reports_table, sample_file

SMALL = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "SC_rgb_rle.dcm", "emri_small.dcm", "JPEG2000.dcm"]
FILES = 24
COMMON_ARGS = [
    "--bucket-kind",
    "gcs",
    "--query",
    "reports",
    "--batch-size",
    "2",
    "--max-concurrency",
    "2",
    "--page-size",
    "5",
    "--failure-threshold",
    "1",
    "--retry-backoff-seconds",
    "0.01",
    "--download-retries",
    "1",
]


def _uploads(server, schema: str) -> int:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (f"{schema}.uploads",))
            if cur.fetchone()[0] is None:
                return 0
            cur.execute(f"SELECT count(*) FROM {schema}.uploads")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _run_and_kill(env: dict[str, str], args: list[str], server, schema: str, kill_at: int, log: Path) -> int:
    """Start the CLI run in a child process and SIGKILL it once ``kill_at`` objects are logged."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clinicflow.cli", "dicom", "run", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parents[3],
        )
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise AssertionError(f"run finished before the kill point (rc={proc.returncode}); see {log}")
                uploaded = _uploads(server, schema)
                if uploaded >= kill_at:
                    proc.kill()
                    proc.wait(10)
                    return uploaded
                time.sleep(0.03)
            raise AssertionError(f"kill point {kill_at} not reached; see {log}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.mark.slow
def test_killed_twice_and_rerun_equals_a_clean_run(
    prefect_server, reports_db, file_server, gcs_emulator, monkeypatch, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    from flows.dicom_reports import extract_dicom_reports

    rows = []
    for i in range(FILES):
        name = f"f{i:02d}_{SMALL[i % len(SMALL)]}"
        shutil.copyfile(sample_file(SMALL[i % len(SMALL)]), file_server.root / name)
        rows.append((f"st{i % 4}", f"se{i % 7}", f"in{i:02d}", name, f"report {i}"))
        rows.append((f"st{i % 4}", f"se{i % 7}", f"in{i:02d}", name, f"second opinion {i % 3}"))
    (file_server.root / "broken.dcm").write_bytes(b"not dicom")
    rows.append(("st9", "se9", "in99", "broken.dcm", "bad"))
    create_reports_table(reports_db, rows)
    file_server.delay = 0.12  # slow enough downloads to kill the run midway

    clean_bucket, resumed_bucket = gcs_emulator.new_bucket(), gcs_emulator.new_bucket()
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_POSTGRES_DATABASE", reports_db.database)
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_BUCKET", clean_bucket)
    params = {
        "bucket_kind": "gcs",
        "query": "reports",
        "base_location": file_server.base_url,
        "batch_size": 2,
        "max_concurrency": 2,
        "page_size": 5,
        "failure_threshold": 1,
        "retry_backoff_seconds": 0.01,
        "download_retries": 1,
    }
    clean = extract_dicom_reports(state_schema="state_clean", **params)
    assert clean["converted"] == FILES

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "CLINICFLOW_CREDENTIALS": "env",
        "CLINICFLOW_DICOM_REPORTS_BUCKET_BUCKET": resumed_bucket,
    }
    args = [*COMMON_ARGS, "--base-location", file_server.base_url, "--state-schema", "state_resume"]
    log = tmp_path / "killed-runs.log"
    total_objects = 2 * FILES + 2  # DICOM + JPG per file, reports.csv, failures.csv

    first_kill = _run_and_kill(env, args, reports_db, "state_resume", 5, log)
    after_first = {n: b.generation for n, b in gcs_emulator.objects(resumed_bucket).items()}
    _run_and_kill(env, args, reports_db, "state_resume", first_kill + 16, log)
    after_second = {n: b.generation for n, b in gcs_emulator.objects(resumed_bucket).items()}
    assert 0 < len(after_first) < len(after_second) < total_objects, "the kills did not land midway"

    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_BUCKET", resumed_bucket)
    resumed = extract_dicom_reports(state_schema="state_resume", **params)
    assert resumed["skipped"] + resumed["converted"] == FILES

    clean_objects = gcs_emulator.objects(clean_bucket)
    final = gcs_emulator.objects(resumed_bucket)
    # Same objects with the same bytes; the CSV is identical.
    assert set(final) == set(clean_objects)
    assert len(final) == total_objects
    assert {n: b.md5_hash for n, b in final.items()} == {n: b.md5_hash for n, b in clean_objects.items()}
    csv_name = "dicom-reports/reports.csv"
    assert final[csv_name].download_as_bytes() == clean_objects[csv_name].download_as_bytes()
    # Nothing present after a kill was uploaded again later.
    for snapshot in (after_first, after_second):
        assert {n: final[n].generation for n in snapshot} == snapshot
    # And the upload log never counted a second upload of any object.
    conn = reports_db.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT max(upload_count), count(*) FROM state_resume.uploads")
        most, logged = cur.fetchone()
        cur.execute("SELECT count(*) FROM state_resume.files WHERE status = 'uploading'")
        stuck = cur.fetchone()[0]
    conn.close()
    assert most == 1
    assert logged == total_objects
    assert stuck == 0
