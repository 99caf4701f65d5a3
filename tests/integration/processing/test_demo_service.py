"""``clinicflow demo --serve-only``: the demo's processing service starts, runs its jobs, and stops cleanly.

Runs the real start-up path (Prefect server, process pool and worker, the
process-data deployment, ``clinicflow serve``) against the local PostgreSQL
in a database of its own, reads the printed URL and token, follows the two
demo jobs through the API, then sends SIGTERM and looks for survivors among
every process the demo had started.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from blocks.databases import PostgresServer
from clinicflow_dev.demo_service import stop_process_group
from tests.conftest import unique_name
from tests.integration.deploy.e2e_support import BIN, REPO, clean_env
from tests.integration.processing.service_support import drop_database

pytestmark = pytest.mark.e2e  # its own Prefect server, worker and API: the demo's start-up is the point


def descendants(pid: int) -> dict[int, bytes]:
    """Every live descendant of ``pid``: pid -> command line (to tell a survivor from a reused pid)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, bytes] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                frontier.append(child)
    return found


def still_running(pid: int, cmdline: bytes) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" and Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline
    except OSError:
        return False


def read_lines(stream, lines: queue.Queue[str]) -> None:  # type: ignore[no-untyped-def]
    for line in stream:
        lines.put(line)


def test_demo_service_starts_runs_the_demo_jobs_and_stops_without_survivors(tmp_path: Path) -> None:
    admin = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres")
    name = unique_name("demo_service")
    env = clean_env({"CLINICFLOW_ANALYTICS_POSTGRES_DATABASE": name})
    demo = subprocess.Popen(
        [
            str(BIN / "clinicflow"),
            "demo",
            "--serve-only",
            "--serve-port",
            "0",
            "--prefect-port",
            "0",
            "--serve-dir",
            str(tmp_path / "demo-service"),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_lines, args=(demo.stdout, lines), daemon=True).start()
    output: list[str] = []
    children: dict[int, bytes] = {}
    try:
        deadline = time.monotonic() + 360  # the demo allows the server minutes on a busy machine
        while not any(line.startswith("submitted demo jobs") for line in output):
            assert demo.poll() is None or not lines.empty(), "".join(output)
            assert time.monotonic() < deadline, "no 'submitted demo jobs' line:\n" + "".join(output)
            with contextlib.suppress(queue.Empty):
                output.append(lines.get(timeout=1))
        text = "".join(output)
        url = re.search(r"processing service: (http://127\.0\.0\.1:\d+)/ui/", text).group(1)  # type: ignore[union-attr]
        token = re.search(r"API token: (\S+)", text).group(1)  # type: ignore[union-attr]
        ids = [int(i) for i in re.search(r"submitted demo jobs \[([\d, ]+)\]", text).group(1).split(",")]  # type: ignore[union-attr]
        assert f"{url}/ui/#token={token}" in text, "the printed link opens the page signed in"
        prefect_ui = re.search(r"Prefect UI: (http://127\.0\.0\.1:\d+)/", text).group(1)  # type: ignore[union-attr]
        # The UI calls the API of the server on the port it got (not 4200).
        assert httpx.get(f"{prefect_ui}/ui-settings", timeout=30).json()["api_url"] == f"{prefect_ui}/api"

        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            assert client.get("/ui/").status_code == 200
            rows = {}
            deadline = time.monotonic() + 240
            while len(rows) < len(ids):
                for result_id in ids:
                    row = client.get(f"/api/etl/results/{result_id}").json()
                    if row["status"] not in ("PENDING", "PROCESSING"):
                        rows[result_id] = row
                assert time.monotonic() < deadline, f"demo jobs not ended: {rows}"
                time.sleep(0.5)
        assert {row["processing_type"]: row["status"] for row in rows.values()} == {
            "rolling_mean": "COMPLETED",
            "peak_detection": "COMPLETED",
        }, rows
        peaks = next(row for row in rows.values() if row["processing_type"] == "peak_detection")
        assert peaks["result_data"]["count"] == 8  # one spike every 250 of the 2000 rows

        children = descendants(demo.pid)
        commands = b"\n".join(children.values())
        for part in (b"server\x00start", b"worker\x00start", b"serve\x00--host", b"processing\x00workers"):
            assert part in commands, commands
        os.kill(demo.pid, signal.SIGTERM)
        assert demo.wait(timeout=90) == 0, "".join(output)
        survivors = {pid: cmd for pid, cmd in children.items() if still_running(pid, cmd)}
        assert not survivors, survivors
    finally:
        stop_process_group(demo)
        for pid, cmd in children.items():
            if still_running(pid, cmd):
                os.kill(pid, signal.SIGKILL)
        drop_database(admin, name)
