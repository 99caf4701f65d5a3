"""``clinicflow serve --workers 2``: two API processes on one socket and one dispatcher, all given the
secrets on a pipe (none in a process environment), stopped cleanly by SIGTERM. No Prefect server: the
dispatcher's sends fail and the rows stay PENDING, which is not the point here."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from blocks.databases import PostgresServer
from clinicflow_dev.demo_service import stop_process_group
from tests.conftest import unique_name
from tests.integration.deploy.e2e_support import BIN, REPO, block_env, clean_env, free_port
from tests.integration.processing.service_support import create_database, drop_database
from tests.integration.processing.test_demo_service import descendants

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
TOKEN = "serve-workers-token-0123456789"


def test_two_api_processes_answer_with_the_token_they_never_hold_in_their_environment(tmp_path: Path) -> None:
    import pandas as pd

    admin = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres")
    name = unique_name("serve_workers")
    database = create_database(admin, name)
    (tmp_path / "bucket").mkdir()
    (tmp_path / "scripts").mkdir()
    env = clean_env(
        {
            **block_env("analytics-postgres", database),
            "CLINICFLOW_CREDENTIALS": "env",
            "CLINICFLOW_PROCESSING_BUCKET_KIND": "local",
            "CLINICFLOW_PROCESSING_FILES_BUCKET_PATH": str(tmp_path / "bucket"),
            "CLINICFLOW_PROCESSING_SCRIPTS_DIR": str(tmp_path / "scripts"),
            "CLINICFLOW_API_TOKEN": TOKEN,
            "PREFECT_API_URL": "http://127.0.0.1:9/api",
            "PREFECT_HOME": str(tmp_path / "prefect"),
        }
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [str(BIN / "clinicflow"), "serve", "--port", str(port), "--workers", "2"],
        env=env,
        cwd=REPO,
        stdout=(tmp_path / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        health: dict = {}
        while time.monotonic() < deadline and not health:
            try:
                health = httpx.get(f"{url}/health", timeout=5).json()
            except httpx.HTTPError:
                time.sleep(0.5)
        assert health.get("database") == "ok", health
        assert health.get("dispatcher") == "run by the serve process", health
        pd.DataFrame({"v": range(10)}).to_csv(tmp_path / "s.csv", index=False)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client, open(tmp_path / "s.csv", "rb") as f:
            data_file = client.post("/api/etl/files", files={"file": ("s.csv", f, "text/csv")}).json()
            answers = [
                client.post(
                    "/api/etl/process",
                    json={
                        "data_file_id": data_file["id"],
                        "processing_type": "rolling_mean",
                        "parameters": {"window": 2},
                    },
                )
                for _ in range(8)
            ]
            assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
            assert httpx.get(f"{url}/api/etl/results", timeout=30).status_code == 401
        deadline = time.monotonic() + 180  # the second process may still be starting (a loaded machine)
        while (
            time.monotonic() < deadline
            and (tmp_path / "api.log").read_text(errors="replace").count("Application startup complete") < 2
        ):
            time.sleep(0.5)
        log = (tmp_path / "api.log").read_text(errors="replace")
        assert log.count("Application startup complete") == 2, log
        processes = descendants(serve.pid)
        assert sum(b"clinicflow.service.workers" in cmd for cmd in processes.values()) == 2, processes
        assert any(b"clinicflow.service.dispatch" in cmd for cmd in processes.values()), processes
        for pid in [serve.pid, *processes]:
            assert TOKEN.encode() not in Path(f"/proc/{pid}/environ").read_bytes(), f"the token is in pid {pid}"
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=90) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in processes):
            time.sleep(0.5)
        assert not [p for p in processes if Path(f"/proc/{p}").exists()], "a child outlived the serve process"
    finally:
        stop_process_group(serve)
        drop_database(admin, name)
