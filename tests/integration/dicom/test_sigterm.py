"""SIGTERM during a download that would take minutes: the run stops at once, saves its progress, and a rerun
finishes the rest without downloading anything twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.dicom.conftest import create_reports_table, sample_file

ROOT = Path(__file__).parents[3]


def _statuses(server) -> dict[str, str]:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('clinicflow_dicom.files')")
            if cur.fetchone()[0] is None:
                return {}
            cur.execute("SELECT instance_id, status FROM clinicflow_dicom.files")
            return dict(cur.fetchall())
    finally:
        conn.close()


@pytest.mark.slow
def test_sigterm_stops_a_trickling_download_and_keeps_progress(
    prefect_server, reports_db, file_server, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    for name in ("a.dcm", "b.dcm", "c.dcm"):
        shutil.copyfile(sample_file("CT_small.dcm"), file_server.root / name)
    create_reports_table(
        reports_db, [("s", "se", "i1", "a.dcm", "x"), ("s", "se", "i2", "b.dcm", "y"), ("s", "se", "i3", "c.dcm", "z")]
    )
    file_server.faults["b.dcm"] = ["trickle"]  # one byte a second: ~40,000 s
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "CLINICFLOW_CREDENTIALS": "env",
        "CLINICFLOW_DICOM_REPORTS_POSTGRES_DATABASE": reports_db.database,
        "CLINICFLOW_DICOM_REPORTS_BUCKET_PATH": str(tmp_path / "bucket"),
    }
    args = [
        sys.executable,
        "-m",
        "clinicflow.cli",
        "dicom",
        "run",
        "--query",
        "reports",
        "--batch-size",
        "1",
        "--max-concurrency",
        "1",
        "--base-location",
        file_server.base_url,
        "--download-timeout-seconds",
        "600",
    ]
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 120
            while file_server.requests["b.dcm"] == 0:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the trickling download never started"
                time.sleep(0.05)
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            # Bound, not speed: the download alone would take hours and its limit is 10 minutes.
            returncode = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log.read_text()
    assert returncode == 1, output
    assert "stopped by SIGTERM" in output
    assert _statuses(reports_db) == {"i1": "done"}  # b neither done nor failed; c never started
    assert file_server.requests["c.dcm"] == 0

    rerun = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _statuses(reports_db) == {"i1": "done", "i2": "done", "i3": "done"}
    assert file_server.requests["a.dcm"] == 1
