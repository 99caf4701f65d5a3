"""The data-processing service on local defaults, for ``clinicflow demo`` (``--serve``).

Starts, as subprocesses in their own process groups: a Prefect server
(``prefect server start`` on loopback, its PREFECT_HOME under the demo
folder), a process work pool with one process worker, and ``clinicflow
serve``; registers the ``process-data`` deployment on that pool (the flow's
code is this checkout), uploads a small vitals CSV and submits one
rolling_mean and one peak_detection job, prints the URLs and the token, and
serves in the foreground until Ctrl-C or SIGTERM, then stops everything.
"""

from __future__ import annotations

import io
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import httpx

from clinicflow.core import secret_env

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO_POOL = "clinicflow-demo-process"
PREFECT_PORT = 4200
SERVICE_PORT = 8000
CANNOT_START = 2
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class ProcessExited(RuntimeError):
    """A process we started ended before it answered."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_or_free(port: int) -> int:
    """``port`` when nothing listens on it on loopback, else (or for 0) a free one."""
    if port:
        with socket.socket() as sock:
            # As the servers bind: a port a stopped run left in TIME_WAIT is free for them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a process we started in its own process group (a worker's flow-run children too)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 120, *, ready: bool = False) -> None:
    """Poll ``url`` until it answers 200 (``ready``: and its JSON says ``"status": "ok"``, as the processing
    API's does once its dispatcher can create runs); ProcessExited (with the log's tail) if the process ends
    first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ProcessExited(
                f"{process.args[0]} exited with {process.returncode}: {log.read_text(errors='replace')[-3000:]}"
            )
        try:
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200 and (not ready or answer.json().get("status") == "ok"):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f}s: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def start_prefect_server(home: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    """``prefect server start`` on 127.0.0.1:port with PREFECT_HOME=home (log: home/server.log)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "server.log").open("wb") as out:
        return subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, "PREFECT_HOME": str(home)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def create_process_pool(api_url: str, name: str) -> None:
    """A process work pool ``name`` (an existing one is kept)."""
    response = httpx.post(f"{api_url}/work_pools/", json={"name": name, "type": "process"}, timeout=30)
    if response.status_code not in (201, 409):
        response.raise_for_status()


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment for a child, without any Prefect setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PYTHONUNBUFFERED": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_CLI_PROMPT": "false"})
    env.update(extra)
    return env


def deploy_process_data(api_url: str, pool: str) -> None:
    """Register deployment ``process-data/process-data`` on ``pool``, running this checkout's flow."""
    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect prints a table of the deployments on stdout: the demo prints its own summary instead.
    with temporary_settings(updates={PREFECT_API_URL: api_url}), redirect_stdout(io.StringIO()):
        source = flow.from_source(source=str(REPO), entrypoint="flows/process_data.py:process_data")
        source.deploy(name="process-data", work_pool_name=pool, ignore_warnings=True, print_next_steps=False)


def vitals_csv(path: Path, rows: int = 2000) -> Path:
    """A small deterministic vitals series (a heart-rate spike every 250 rows) for the demo jobs."""
    with path.open("w", encoding="utf-8") as out:
        out.write("second,heart_rate,spo2\n")
        for i in range(rows):
            heart_rate = 72 + 6 * math.sin(i / 40) + (3 * math.sin(i * 1.7)) + (30 if i % 250 == 125 else 0)
            spo2 = 97 + math.sin(i / 90)
            out.write(f"{i},{heart_rate:.2f},{spo2:.2f}\n")
    return path


DEMO_JOBS: list[tuple[str, dict[str, Any]]] = [
    ("rolling_mean", {"window": 25, "columns": ["heart_rate", "spo2"]}),
    ("peak_detection", {"column": "heart_rate", "height": 95, "distance": 50}),
]


def submit_demo_jobs(service_url: str, token: str, csv_path: Path) -> tuple[int, list[int]]:
    """Upload the CSV and submit the demo jobs; the file's id and the jobs' result ids."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=service_url, headers=headers, timeout=60) as client:
        with csv_path.open("rb") as data:
            uploaded = client.post("/api/etl/files", files={"file": (csv_path.name, data, "text/csv")})
        uploaded.raise_for_status()
        ids = []
        for processing_type, parameters in DEMO_JOBS:
            response = client.post(
                "/api/etl/process",
                json={
                    "data_file_id": uploaded.json()["id"],
                    "processing_type": processing_type,
                    "parameters": parameters,
                },
            )
            response.raise_for_status()
            ids.append(int(response.json()["id"]))
        return int(uploaded.json()["id"]), ids


def job_statuses(service_url: str, token: str, ids: list[int]) -> dict[int, str]:
    with httpx.Client(base_url=service_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        return {i: client.get(f"/api/etl/results/{i}").json().get("status", "?") for i in ids}


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """While inside, the first SIGTERM or SIGINT (Ctrl-C) raises KeyboardInterrupt and sets the event; later
    ones are ignored, so a second Ctrl-C cannot interrupt the clean-up. The previous handlers come back after."""
    stopping = threading.Event()

    def handle(_signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_demo(
    out_dir: Path,
    *,
    service_port: int = SERVICE_PORT,
    prefect_port: int = PREFECT_PORT,
    echo: Callable[[str], None] = print,
) -> int:
    """Start the stack, submit the demo jobs, serve until SIGTERM/Ctrl-C.

    Returns 0 on a normal stop, 1 when a part died while serving, 2 when the stack could not start.
    """
    out_dir = out_dir.resolve()
    for folder in ("bucket", "scripts", "client"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    token = (secret_env.getenv("CLINICFLOW_API_TOKEN") or "").strip() or secrets.token_urlsafe(24)
    # The flow runs and the API find the database in the environment (local defaults), never in blocks.
    analytics = {
        name: secret_env.getenv(name) or ""
        for name in secret_env.names()
        if name.startswith("CLINICFLOW_ANALYTICS_POSTGRES_")
    }
    wanted = {"Prefect server": prefect_port, "processing service": service_port}
    prefect_port, service_port = port_or_free(prefect_port), port_or_free(service_port)
    for (what, asked), got in zip(wanted.items(), (prefect_port, service_port), strict=True):
        if asked and got != asked:
            echo(f"port {asked} is taken: the {what} uses port {got}")
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    service_url = f"http://127.0.0.1:{service_port}"
    shared = {
        **analytics,
        "CLINICFLOW_CREDENTIALS": "env",
        "CLINICFLOW_PROCESSING_BUCKET_KIND": "local",
        "CLINICFLOW_PROCESSING_FILES_BUCKET_PATH": str(out_dir / "bucket"),
        "CLINICFLOW_PROCESSING_SCRIPTS_DIR": str(out_dir / "scripts"),
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(out_dir / "client"),
    }
    started: list[subprocess.Popen] = []
    with stop_signals(), ExitStack() as cleanup:
        cleanup.callback(lambda: [stop_process_group(p) for p in reversed(started)])
        try:
            file_id, ids = _start(out_dir, started, shared, token, api_url, service_url, echo)
            from clinicflow.service.dispatch import deployment_min_rows

            echo(
                f"processing service: {service_url}/ui/#token={token}  (opens signed in; API "
                f"{service_url}/api/etl/..., docs {service_url}/docs)"
            )
            echo(f"API token: {token}")
            echo(f"  e.g. curl -H 'Authorization: Bearer {token}' {service_url}/api/etl/results")
            echo(
                f"Prefect UI: {api_url.removesuffix('/api')}/  (task runs process-result-background; "
                f"deployment process-data/process-data, pool {DEMO_POOL}, for files of "
                f"{deployment_min_rows():,} rows or more)"
            )
            echo(
                f"submitted demo jobs {ids} (rolling_mean, peak_detection) on file {file_id} "
                f"({out_dir / 'vitals.csv'}); "
                f"logs in {out_dir}; Ctrl-C to stop"
            )
            return _watch(started, service_url, token, ids, out_dir, echo)
        except KeyboardInterrupt:
            echo("stopping the processing service, the workers and the Prefect server")
            return 0
        except (RuntimeError, ValueError, httpx.HTTPError) as exc:  # messages name the part and its log, no secret
            echo(f"the processing service could not start: {type(exc).__name__}: {exc}")
            return CANNOT_START


def _start(
    out_dir: Path,
    started: list[subprocess.Popen],
    shared: dict[str, str],
    token: str,
    api_url: str,
    service_url: str,
    echo: Callable[[str], None],
) -> tuple[int, list[int]]:
    """Server, pool, deployment, worker, service (each appended to ``started`` at once), then the demo jobs (the
    file's id and the jobs')."""
    from flows.runtime import EMBEDDED_ENV_DEFAULTS, server_environment

    port = api_url.rsplit(":", 1)[1].split("/")[0]
    echo(f"starting a Prefect server on 127.0.0.1:{port} (home {out_dir / 'prefect'})")
    # The embedded server's start-up savings apply here too (no block type registration, no telemetry).
    # PREFECT_UI_API_URL: the UI's browser code calls this server's API on whatever port it got.
    server_env = server_environment(
        child_environment({**EMBEDDED_ENV_DEFAULTS, "PREFECT_UI_ENABLED": "true", "PREFECT_UI_API_URL": api_url})
    )
    started.append(start_prefect_server(out_dir / "prefect", int(port), server_env))
    # Generous: the first start migrates a new SQLite database, minutes on a busy 2-core machine.
    wait_healthy(f"{api_url}/health", started[-1], out_dir / "prefect" / "server.log", timeout=300)
    create_process_pool(api_url, DEMO_POOL)
    # The worker and the API start (import) while this process registers the deployment.
    worker_env = child_environment({**shared, "PREFECT_WORKER_QUERY_SECONDS": "2"})  # pick demo jobs up promptly
    with (out_dir / "worker.log").open("wb") as log:
        started.append(
            subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", DEMO_POOL, "--type", "process", "--limit", "2"],
                env=worker_env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    # The task worker runs the demo's jobs (warm: it picks each up as soon as the API submits it).
    with (out_dir / "task-worker.log").open("wb") as log:
        started.append(
            subprocess.Popen(
                [str(BIN / "clinicflow"), "processing", "workers", "--concurrency", "1", "--limit", "2"],
                env=child_environment(shared),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    service_port = service_url.rsplit(":", 1)[1]
    with (out_dir / "service.log").open("wb") as log:
        started.append(
            subprocess.Popen(
                [str(BIN / "clinicflow"), "serve", "--host", "127.0.0.1", "--port", service_port],
                env=child_environment({**shared, "CLINICFLOW_API_TOKEN": token}),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deploy_process_data(api_url, DEMO_POOL)
    wait_healthy(f"{service_url}/health", started[-1], out_dir / "service.log", timeout=300, ready=True)
    return submit_demo_jobs(service_url, token, vitals_csv(out_dir / "vitals.csv"))


def _watch(
    started: list[subprocess.Popen],
    service_url: str,
    token: str,
    ids: list[int],
    out_dir: Path,
    echo: Callable[[str], None],
) -> int:
    """Until interrupted: report each demo job once it ends; 1 as soon as a process of the stack dies."""
    pending = set(ids)
    while True:
        dead = [p for p in started if p.poll() is not None]
        if dead:
            echo(
                f"{' '.join(map(str, dead[0].args[1:3]))} exited with {dead[0].returncode}: see the logs in "
                f"{out_dir}; stopping"
            )
            return 1
        if pending:
            try:
                ended = {i: s for i, s in job_statuses(service_url, token, sorted(pending)).items() if s in TERMINAL}
            except httpx.HTTPError:
                ended = {}
            for result_id, status in ended.items():
                echo(f"demo job {result_id}: {status}")
            pending -= set(ended)
        time.sleep(1.0)
