"""The service end to end: real PostgreSQL, a real Prefect server, task workers and a process worker, the API
over HTTP."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.signal import find_peaks

from tests.integration.processing.conftest import SCRIPTS
from tests.integration.processing.hostile_scripts import job_process_of, processes_named
from tests.integration.processing.service_support import DEPLOYMENT_MIN_ROWS, TOKEN, Service

# One xdist group with the other users of the session-scoped processing service: it starts once.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.xdist_group("processing-service"),
    pytest.mark.timeout(900),
]


def signal_csv(path: Path, rows: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    t = np.arange(rows)
    frame = pd.DataFrame({"t": t, "voltage": np.sin(t / 20.0) * 2 + rng.normal(0, 0.3, rows)})
    frame.to_csv(path, index=False)
    return frame


def upload(service: Service, path: Path) -> dict[str, Any]:
    with service.client() as client, open(path, "rb") as handle:
        response = client.post("/api/etl/files", files={"file": (path.name, handle, "text/csv")})
    assert response.status_code == 201, response.text
    return response.json()


def submit(service: Service, file_id: int, kind: str, parameters: dict[str, Any]) -> dict[str, Any]:
    with service.client() as client:
        response = client.post(
            "/api/etl/process", json={"data_file_id": file_id, "processing_type": kind, "parameters": parameters}
        )
    assert response.status_code == 202, response.text
    return response.json()


class Updates:
    """/ws messages collected in a thread."""

    def __init__(self, service: Service) -> None:
        from websockets.sync.client import connect

        self.messages: list[dict[str, Any]] = []
        self.socket = connect(service.url.replace("http", "ws") + "/ws")
        self.socket.send(json.dumps({"type": "auth", "token": TOKEN}))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for text in self.socket:
                self.messages.append(json.loads(text))
        except Exception:  # noqa: BLE001 - closed at the end of the test
            pass

    def statuses(self, result_id: int) -> list[str]:
        return [m["status"] for m in self.messages if m["id"] == result_id]

    def close(self) -> None:
        self.socket.close()


def run_state(service: Service, kind: str, run_id: str) -> str:
    """The state type of a flow run (kind "flow_runs") or task run ("task_runs") on the service's Prefect API."""
    import urllib.request

    with urllib.request.urlopen(f"{service.stack.api_url}/{kind}/{run_id}", timeout=10) as response:
        return json.loads(response.read())["state"]["type"]


def wait_run_state(service: Service, kind: str, run_id: str, wanted: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (state := run_state(service, kind, run_id)) != wanted:
        assert time.monotonic() < deadline, f"{kind} {run_id} is {state}, expected {wanted}"
        time.sleep(0.5)


def wait_flow_run_state(service: Service, flow_run_id: str, wanted: str, timeout: float = 120) -> None:
    wait_run_state(service, "flow_runs", flow_run_id, wanted, timeout)


def wait_task_run_state(service: Service, task_run_id: str, wanted: str, timeout: float = 120) -> None:
    wait_run_state(service, "task_runs", task_run_id, wanted, timeout)


def test_health_is_open_and_everything_else_needs_the_token(service: Service) -> None:
    with service.client(token=None) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["database"] == "ok"
        # The fixture waited for "ok": the dispatcher is connected and warm, so a job starts at once.
        assert health.json()["status"] == "ok"
        assert health.json()["dispatcher"] == "ready"
        for method, path in (
            ("GET", "/api/etl/results"),
            ("GET", "/api/etl/results/1"),
            ("POST", "/api/etl/process"),
            ("DELETE", "/api/etl/results/1"),
            ("GET", "/api/etl/results/1/export"),
            ("POST", "/api/etl/files"),
        ):
            assert client.request(method, path).status_code == 401, path
        assert client.get("/api/etl/results", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/ui/").status_code == 200  # the page holds no data; its calls need the token
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus, match="403"):  # closed before the handshake completes
        connect(service.url.replace("http", "ws") + "/ws", subprotocols=["clinicflow.token.wrong"])  # type: ignore[list-item]


def test_rolling_mean_and_peaks_complete_with_correct_results(service: Service, tmp_path: Path) -> None:
    frame = signal_csv(tmp_path / "voltage.csv")
    data_file = upload(service, tmp_path / "voltage.csv")
    assert data_file["row_count"] == 2000
    assert [c["name"] for c in data_file["columns"]] == ["t", "voltage"]
    with service.client() as client:
        preview = client.get(f"/api/etl/files/{data_file['id']}/preview", params={"rows": 3}).json()
    assert preview["rows"] == 2000
    assert [r["t"] for r in preview["head"]] == [0, 1, 2]
    stats = {c["name"]: c for c in preview["columns"]}
    assert stats["voltage"]["mean"] == pytest.approx(frame["voltage"].mean())
    assert stats["t"]["min"] == 0
    assert stats["t"]["max"] == 1999
    assert stats["t"]["nulls"] == 0
    updates = Updates(service)
    try:
        rolling = submit(
            service,
            data_file["id"],
            "rolling_mean",
            {"window": 25, "center": True, "columns": ["voltage"], "max_points": 100},
        )
        peaks = submit(
            service, data_file["id"], "peak_detection", {"column": "voltage", "prominence": 1.0, "distance": 30}
        )
        assert rolling["status"] == "PENDING"
        assert rolling["runs_as"] == "task"
        done = service.wait_for(rolling["id"], {"COMPLETED", "FAILED", "CRASHED"})
        assert done["status"] == "COMPLETED", done
        found = service.wait_for(peaks["id"], {"COMPLETED", "FAILED", "CRASHED"})
        assert found["status"] == "COMPLETED", found
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and updates.statuses(peaks["id"])[-1:] != ["COMPLETED"]:
            time.sleep(0.2)
    finally:
        updates.close()
    expected_mean = frame["voltage"].rolling(25, center=True).mean().to_numpy()
    # The row keeps an overview (every 20th row of 2,000 for max_points 100); the JSON export has every row.
    assert done["result_data"]["step"] == 20
    assert done["result_data"]["index"] == list(range(0, 2000, 20))
    got = np.array(done["result_data"]["series"]["voltage"]["rolling_mean"], dtype=float)
    np.testing.assert_allclose(got, expected_mean[::20], equal_nan=True, rtol=1e-9)
    expected_peaks, props = find_peaks(frame["voltage"].to_numpy(), prominence=1.0, distance=30)
    assert [p["index"] for p in found["result_data"]["peaks"]] == expected_peaks.tolist()
    assert [p["prominence"] for p in found["result_data"]["peaks"]] == pytest.approx(props["prominences"].tolist())
    # Live: each row went PENDING -> PROCESSING (progress) -> COMPLETED, relayed from NOTIFY.
    for result_id in (rolling["id"], peaks["id"]):
        seen = [
            s for i, s in enumerate(updates.statuses(result_id)) if i == 0 or updates.statuses(result_id)[i - 1] != s
        ]
        assert seen == ["PENDING", "PROCESSING", "COMPLETED"], updates.messages
    assert done["task_run_id"]
    assert done["worker"]
    assert done["flow_run_id"] is None
    wait_task_run_state(service, done["task_run_id"], "COMPLETED")

    with service.client() as client:
        listed = client.get("/api/etl/results", params={"type": "peak_detection", "status": "COMPLETED"}).json()
        listed_ids = [r["id"] for r in listed["items"]]
        assert peaks["id"] in listed_ids
        assert rolling["id"] not in listed_ids
        page = client.get("/api/etl/results", params={"limit": 1, "offset": 0}).json()
        assert len(page["items"]) == 1
        assert page["total"] >= 2
        csv_text = client.get(f"/api/etl/results/{peaks['id']}/export", params={"format": "csv"}).text
        assert csv_text.splitlines()[0] == "index,t,value,prominence"  # the file's time column at each peak
        assert len(csv_text.splitlines()) == len(expected_peaks) + 1
        exported = client.get(f"/api/etl/results/{rolling['id']}/export", params={"format": "json"})
        assert exported.headers["content-disposition"].endswith(f'result-{rolling["id"]}.json"')
        full = exported.json()
        assert {k: v for k, v in full.items() if k != "result_data"} == {
            k: v for k, v in done.items() if k != "result_data"
        }
        data = full["result_data"]
        assert data["resolution"] == "full"
        assert data["step"] == 1
        assert data["index"] == list(range(2000))
        np.testing.assert_allclose(
            np.array(data["series"]["voltage"]["rolling_mean"], dtype=float), expected_mean, equal_nan=True, rtol=1e-9
        )
        np.testing.assert_allclose(data["series"]["voltage"]["values"], frame["voltage"].to_numpy(), rtol=1e-12)
        assert data["summary"] == done["result_data"]["summary"]
        peaks_json = client.get(f"/api/etl/results/{peaks['id']}/export", params={"format": "json"}).json()
        assert len(peaks_json["result_data"]["series"]["voltage"]["values"]) == 2000
        assert peaks_json["result_data"]["peaks"] == found["result_data"]["peaks"]


@pytest.mark.parametrize(
    ("kind", "parameters", "field"),
    [
        ("fourier", {}, ["body", "processing_type"]),
        ("rolling_mean", {"window": 0}, ["body", "parameters", "window"]),
        ("rolling_mean", {"window": 3, "columns": ["pulse"]}, ["body", "parameters", "columns"]),
        ("peak_detection", {"height": "tall"}, ["body", "parameters", "height"]),
        ("custom", {"script": "../outside"}, ["body", "parameters", "script"]),
        ("custom", {"script": "linked_outside"}, ["body", "parameters", "script"]),
        ("custom", {"script": "not_there"}, ["body", "parameters", "script"]),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    service: Service, tmp_path: Path, kind: str, parameters: dict[str, Any], field: list[str]
) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text(SCRIPTS["column_sum"], encoding="utf-8")
    link = service.scripts_dir / "linked_outside.py"
    if not link.is_symlink():
        os.symlink(outside, link)
    signal_csv(tmp_path / "v.csv", rows=50)
    data_file = upload(service, tmp_path / "v.csv")
    with service.client() as client:
        before = client.get("/api/etl/results").json()["total"]
        response = client.post(
            "/api/etl/process",
            json={"data_file_id": data_file["id"], "processing_type": kind, "parameters": parameters},
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == field
        assert client.get("/api/etl/results").json()["total"] == before, "a refused request leaves no row"
        missing = client.post("/api/etl/process", json={"data_file_id": 10**9, "processing_type": "data_quality"})
        assert missing.status_code == 422
        assert missing.json()["detail"][0]["loc"] == ["body", "data_file_id"]


def test_a_bad_file_and_a_crashing_script_end_failed_with_the_reason(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("t,v\n" + "".join(f"{i},{i % 5}\n" for i in range(100)) + "100,n/a?\n", encoding="utf-8")
    bad = upload(service, path)
    failed = submit(service, bad["id"], "rolling_mean", {"window": 3, "columns": ["v"]})
    row = service.wait_for(failed["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert row["status"] == "FAILED", row
    assert "column 'v' is not numeric" in row["error"], row
    assert row["result_data"] is None

    signal_csv(tmp_path / "ok.csv", rows=100)
    good = upload(service, tmp_path / "ok.csv")
    crash = submit(service, good["id"], "custom", {"script": "crashes"})
    row = service.wait_for(crash["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert row["status"] == "FAILED", row
    assert "ZeroDivisionError: division by zero" in row["error"], row
    wait_task_run_state(service, row["task_run_id"], "FAILED")

    # A file whose bytes left the bucket (another service's bucket, or deleted): named, not a Python path error.
    signal_csv(tmp_path / "gone.csv", rows=10)
    gone = upload(service, tmp_path / "gone.csv")
    for stored in service.bucket_dir.rglob("gone.csv"):
        stored.unlink()
    orphan = submit(service, gone["id"], "rolling_mean", {"window": 3})
    row = service.wait_for(orphan["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert row["status"] == "FAILED", row
    assert f"gone.csv: file {gone['id']}'s stored copy is not in the files bucket folder" in row["error"], row
    assert "Errno" not in row["error"]

    summed = submit(service, good["id"], "custom", {"script": "column_sum", "params": {"column": "t"}})
    row = service.wait_for(summed["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert row["status"] == "COMPLETED"
    assert row["result_data"]["result"] == {"sum": float(sum(range(100)))}

    # Unreadable bytes are refused at upload time, naming the file.
    with service.client() as client:
        response = client.post(
            "/api/etl/files", files={"file": ("x.parquet", b"not parquet", "application/octet-stream")}
        )
    assert response.status_code == 422
    assert "x.parquet" in response.json()["detail"][0]["msg"]


def start_waiting_job(service: Service, tmp_path: Path, rows: int = 20) -> tuple[dict[str, Any], int, int]:
    """A running custom job: (job, pid of the process running it, pid of the script's process)."""
    signal_csv(tmp_path / "w.csv", rows=rows)
    data_file = upload(service, tmp_path / "w.csv")
    marker = f"w{os.getpid() % 100000}{int(time.monotonic() * 1000) % 100000}"[:15]
    job = submit(
        service, data_file["id"], "custom", {"script": "waits", "params": {"marker": marker}, "timeout_seconds": 600}
    )
    service.wait_for(job["id"], {"PROCESSING"})
    deadline = time.monotonic() + 60
    while not (script_pids := processes_named(marker)):
        assert time.monotonic() < deadline, "the script did not start"
        time.sleep(0.2)
    return job, job_process_of(script_pids[0]), script_pids[0]


def gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_a_task_worker_sigkilled_mid_job_leaves_the_job_crashed_with_its_reason(
    service: Service, tmp_path: Path
) -> None:
    job, worker_pid, script_pid = start_waiting_job(service, tmp_path)
    assert job["runs_as"] == "task"
    running = service.wait_for(job["id"], {"PROCESSING"})
    assert running["worker"].endswith(f"-{worker_pid}"), running
    os.kill(worker_pid, signal.SIGKILL)
    row = service.wait_for(job["id"], {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, timeout=120)
    assert row["status"] == "CRASHED", row
    assert f"task worker {running['worker']} stopped renewing its lease" in row["error"], row
    wait_task_run_state(service, row["task_run_id"], "CRASHED")
    assert gone(script_pid), "the script's process outlived its task worker"
    # The run's copy of the data file was unlinked once open: nothing of it is left after the kill.
    left = [p for d in Path(tempfile.gettempdir()).glob(f"clinicflow-processing-{worker_pid}-*") for p in d.rglob("*")]
    assert left == []
    # The supervisor started another task worker: the next job still runs.
    signal_csv(tmp_path / "after.csv", rows=30)
    after = submit(service, upload(service, tmp_path / "after.csv")["id"], "rolling_mean", {"window": 3})
    assert service.wait_for(after["id"], {"COMPLETED", "FAILED", "CRASHED"})["status"] == "COMPLETED"


def test_delete_stops_a_custom_script_running_in_a_task_worker(service: Service, tmp_path: Path) -> None:
    """The script writes no progress: the runner's row check kills it; its task worker lives on."""
    job, worker_pid, script_pid = start_waiting_job(service, tmp_path)
    assert job["runs_as"] == "task"
    task_run_id = service.wait_for(job["id"], {"PROCESSING"})["task_run_id"]
    with service.client() as client:
        response = client.delete(f"/api/etl/results/{job['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["cancelled_task_run"] == task_run_id, response.text
    assert gone(script_pid), "the script outlived its deleted row"
    os.kill(worker_pid, 0)  # the task worker itself goes on


def test_three_task_workers_share_thirty_jobs_each_run_once(service: Service, tmp_path: Path) -> None:
    """The session's `processing workers --concurrency 2` plus one more process: three task workers."""
    extra = service.start_task_worker(1, 1, name="-extra")
    try:
        service.wait_subscribed(extra)
        signal_csv(tmp_path / "s.csv", rows=3000)
        data_file = upload(service, tmp_path / "s.csv")
        jobs = [
            submit(service, data_file["id"], "rolling_mean", {"window": 2 + i, "columns": ["voltage"]})
            for i in range(30)
        ]
        rows = [service.wait_for(job["id"], {"COMPLETED", "FAILED", "CRASHED"}) for job in jobs]
    finally:
        from clinicflow_dev.demo_service import stop_process_group

        stop_process_group(extra)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 30, [r for r in rows if r["status"] != "COMPLETED"]
    assert [r["result_data"]["window"] for r in rows] == [2 + i for i in range(30)]
    task_runs = {r["task_run_id"] for r in rows}
    assert len(task_runs) == 30
    assert all(run_state(service, "task_runs", t) == "COMPLETED" for t in task_runs)
    import httpx

    # Each job is one task run that ran once: Prefect holds exactly these 30 runs' Running states.
    with httpx.Client(base_url=service.stack.api_url, timeout=60) as client:
        for task_run_id in task_runs:
            history = client.get(f"/task_runs/{task_run_id}").json()["run_count"]
            assert history == 1, (task_run_id, history)
    assert len({r["worker"] for r in rows}) >= 2, "the jobs were not shared between task workers"


def test_delete_cancels_a_running_deployment_run(service: Service, tmp_path: Path) -> None:
    """A file of DEPLOYMENT_MIN_ROWS rows or more runs as a deployment run, cancelled by a delete."""
    job, flow_pid, script_pid = start_waiting_job(service, tmp_path, rows=DEPLOYMENT_MIN_ROWS)
    assert job["runs_as"] == "deployment"
    job["flow_run_id"] = service.wait_for(job["id"], {"PROCESSING"})["flow_run_id"]
    with service.client() as client:
        response = client.delete(f"/api/etl/results/{job['id']}")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "id": job["id"],
            "deleted": True,
            "cancelled_flow_run": job["flow_run_id"],
            "cancelled_task_run": None,
        }
        assert client.get(f"/api/etl/results/{job['id']}").status_code == 404
        assert client.delete(f"/api/etl/results/{job['id']}").status_code == 404
    wait_flow_run_state(service, job["flow_run_id"], "CANCELLED")
    assert gone(flow_pid)
    assert gone(script_pid)


def test_a_row_whose_dispatch_failed_is_dispatched_again_exactly_once(service: Service, tmp_path: Path) -> None:
    """A PENDING row written and claimed by a dispatcher that never sent it (the API stopped, or Prefect was
    unreachable): once the claim runs out, the running API's dispatcher sends it; one task run, run once."""
    import uuid

    import httpx

    from clinicflow.processing import store
    from clinicflow.service.dispatch import CLAIM_SECONDS, POLL_SECONDS

    signal_csv(tmp_path / "s.csv", rows=500)
    data_file = upload(service, tmp_path / "s.csv")
    task_run_id = str(uuid.uuid4())
    conn = service.database.connect()
    try:
        result_id = store.insert_result(
            conn, data_file["id"], "rolling_mean", {"window": 4, "columns": ["voltage"]}, task_run_id
        )
        with conn.cursor() as cur:  # claimed by a dispatcher that stopped: its claim ran out just now
            cur.execute(
                "UPDATE processing.results SET dispatch_claimed_at = now() - make_interval(secs => %s) WHERE id = %s",
                (CLAIM_SECONDS, result_id),
            )
        conn.commit()
    finally:
        conn.close()
    row = service.wait_for(result_id, {"COMPLETED", "FAILED", "CRASHED"}, timeout=CLAIM_SECONDS + 120)
    assert row["status"] == "COMPLETED", row
    assert row["task_run_id"] == task_run_id, row
    assert row["dispatched_at"], row
    wait_task_run_state(service, task_run_id, "COMPLETED")
    time.sleep(POLL_SECONDS + 1)  # another round of the dispatcher: the row is not sent again
    with httpx.Client(base_url=service.stack.api_url, timeout=60) as client:
        assert client.get(f"/task_runs/{task_run_id}").json()["run_count"] == 1
        runs = client.post("/task_runs/filter", json={"task_runs": {"id": {"any_": [task_run_id]}}}).json()
    assert len(runs) == 1
    with service.client() as client:
        assert client.get(f"/api/etl/results/{result_id}").json()["dispatched_at"] == row["dispatched_at"]
