"""Hostile custom scripts against the real service (API, task workers, sandbox): each is contained.

No secret in any result, no row changed but the job's own, no file outside its temp dir, no process
left, and the job FAILED with the reason where a limit hit.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.deploy.e2e_support import REPO
from tests.integration.processing.conftest import pg_rows
from tests.integration.processing.hostile_scripts import SENTINEL, marker, processes_named
from tests.integration.processing.service_support import TOKEN, Service
from tests.integration.processing.test_api import signal_csv, submit, upload

# One xdist group with the other users of the session-scoped processing service: it starts once.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.xdist_group("processing-service"),
    pytest.mark.timeout(900),
]
ENDED = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def final_rows(service: Service) -> dict[int, tuple[Any, ...]]:
    rows = pg_rows(
        service.database,
        "SELECT id, status, result_data::text, error, updated_at FROM processing.results "
        "WHERE status <> ALL(ARRAY['PENDING', 'PROCESSING'])",
    )
    return {int(r[0]): tuple(r[1:]) for r in rows}


def test_hostile_scripts_are_contained(service: Service, tmp_path: Path) -> None:
    signal_csv(tmp_path / "h.csv", rows=50)
    data_file = upload(service, tmp_path / "h.csv")
    before = final_rows(service)
    host_tmp = Path("/tmp") / f"clinicflow-hostile-{os.urandom(4).hex()}"
    outside = [
        str(host_tmp),
        str(service.scripts_dir / "planted.py"),
        str(service.bucket_dir / "planted.txt"),
        str(REPO / "planted_by_script.txt"),
    ]
    returns, outstays = marker("hr"), marker("ht")
    jobs = {
        "steals_env": submit(service, data_file["id"], "custom", {"script": "steals_env"}),
        "calls_out": submit(
            service,
            data_file["id"],
            "custom",
            {
                "script": "calls_out",
                "params": {
                    "database": service.database.database,
                    "own": 0,
                    "api_port": int(service.url.rsplit(":", 1)[1]),
                },
            },
        ),
        "writes_out": submit(
            service, data_file["id"], "custom", {"script": "writes_out", "params": {"paths": outside}}
        ),
        "forks_returns": submit(
            service, data_file["id"], "custom", {"script": "forks_away", "params": {"marker": returns}}
        ),
        "forks_outstays": submit(
            service,
            data_file["id"],
            "custom",
            {"script": "forks_away", "params": {"marker": outstays, "sleep": 60}, "timeout_seconds": 3},
        ),
        "allocates": submit(service, data_file["id"], "custom", {"script": "allocates"}),
        "floods_stderr": submit(
            service, data_file["id"], "custom", {"script": "floods_stderr", "params": {"mib": 300}}
        ),
        "huge_result": submit(service, data_file["id"], "custom", {"script": "huge_result"}),
    }
    rows = {name: service.wait_for(job["id"], ENDED, timeout=300) for name, job in jobs.items()}

    # No secret in any result or error.
    for name, row in rows.items():
        text = json.dumps(row)
        assert SENTINEL not in text, (name, text[:2000])
        assert TOKEN not in text, (name, text[:2000])
        assert "PASSWORD" not in text, (name, text[:2000])
    stolen = rows["steals_env"]
    assert stolen["status"] == "COMPLETED", stolen
    assert len(stolen["result_data"]["result"]["pids"]) <= 3  # its own PID namespace

    # No network: no database, no Prefect API, not even the service; no row changed but its own.
    called = rows["calls_out"]
    assert called["status"] == "COMPLETED", called
    assert "connected" not in called["result_data"]["result"].values(), called
    assert called["result_data"]["result"]["postgres"] != "tampered", called
    after = final_rows(service)
    assert {i: after.get(i) for i in before} == before

    # No file outside its temp dir; a script planted there would not be accepted anyway.
    wrote = rows["writes_out"]
    assert wrote["status"] == "COMPLETED", wrote
    assert not any(Path(p).exists() for p in outside), wrote
    assert wrote["result_data"]["result"]["/etc/shadow"] in ("FileNotFoundError", "PermissionError")
    with service.client() as client:
        planted = client.post(
            "/api/etl/process",
            json={"data_file_id": data_file["id"], "processing_type": "custom", "parameters": {"script": "planted"}},
        )
    assert planted.status_code == 422
    assert "no script 'planted'" in planted.text

    # No process left, whether the script returned or outstayed its limit.
    assert rows["forks_returns"]["status"] == "COMPLETED", rows["forks_returns"]
    assert rows["forks_outstays"]["status"] == "FAILED", rows["forks_outstays"]
    assert "exceeded its time limit of 3 s" in rows["forks_outstays"]["error"], rows["forks_outstays"]
    deadline = time.monotonic() + 10
    while (processes_named(returns) or processes_named(outstays)) and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGKILL lands asynchronously
    assert processes_named(returns) == []
    assert processes_named(outstays) == []

    # Limits hit: FAILED with the reason.
    assert rows["allocates"]["status"] == "FAILED", rows["allocates"]
    assert "MemoryError" in rows["allocates"]["error"], rows["allocates"]
    assert rows["huge_result"]["status"] == "FAILED"
    assert "larger than the limit" in rows["huge_result"]["error"]
    # A 300 MiB stderr flood is drained (its tail kept at most), the job completes.
    assert rows["floods_stderr"]["status"] == "COMPLETED", rows["floods_stderr"]
