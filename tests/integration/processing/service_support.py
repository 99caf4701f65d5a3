"""A running data-processing service for tests and the bench: Prefect server, task worker, process worker, API.

Reuses the end-to-end stack of tests/integration/deploy (a real ``prefect server``, a
process work pool, ``prefect deploy`` of the shipped prefect.yaml on that
pool) and adds the analytics database, a local bucket, a scripts folder and
``clinicflow serve`` and one ``clinicflow processing workers`` task worker as subprocesses. Files of
``DEPLOYMENT_MIN_ROWS`` rows or more run as deployment runs on the process worker.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from blocks.databases import PostgresServer
from clinicflow.core.sql import quote_ident
from clinicflow_dev.admin import admin_pg
from clinicflow_dev.demo_service import wait_healthy
from tests.integration.deploy.e2e_support import (
    BIN,
    REPO,
    TEST_IMAGE,
    PrefectStack,
    block_env,
    free_port,
    process_pool_copy_of_prefect_yaml,
)
from tests.support.prefect_session import stop_processes

POOL = "processing-test"
TOKEN = "test-token-0123456789"
DEPLOYMENT_MIN_ROWS = 5_000
LEASE_SECONDS = 6


@dataclass
class Service:
    stack: PrefectStack
    database: PostgresServer
    bucket_dir: Path
    scripts_dir: Path
    url: str
    env: dict[str, str]
    api: subprocess.Popen | None = None
    api_log: Path | None = None
    started: list[subprocess.Popen] = field(default_factory=list)
    _logs: dict[int, Path] = field(default_factory=dict)

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def wait_for(self, result_id: int, statuses: set[str], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        row: dict[str, Any] = {}
        with self.client() as client:
            while time.monotonic() < deadline:
                row = client.get(f"/api/etl/results/{result_id}").json()
                if row.get("status") in statuses:
                    return row
                time.sleep(0.3)
        raise AssertionError(
            f"result {result_id} still {row.get('status')} after {timeout}s: {row}\n"
            f"--- worker log ---\n{self.stack.worker_log(POOL)[-4000:]}"
        )

    def start_task_worker(self, concurrency: int = 1, limit: int = 2, name: str = "") -> subprocess.Popen:
        """One more ``clinicflow processing workers`` (its log: task-worker<name>-<n>.log in the Prefect home)."""
        path = self.stack.home / f"task-worker{name}-{len(self.started)}.log"
        log = path.open("wb")
        worker = subprocess.Popen(
            [
                str(BIN / "clinicflow"),
                "processing",
                "workers",
                "--concurrency",
                str(concurrency),
                "--limit",
                str(limit),
            ],
            env=self.stack.env(self.env),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(worker)
        self._logs[worker.pid] = path
        return worker

    def wait_subscribed(self, worker: subprocess.Popen, processes: int = 1, timeout: float = 180) -> None:
        """Until ``processes`` task-worker processes of ``worker`` subscribed to the Prefect server (a start
        under load takes a while; jobs sent before go to the workers already there)."""
        path = self._logs[worker.pid]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.read_text(errors="replace").count("Subscribing to runs of task(s)") >= processes:
                return
            if worker.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(
            f"task worker pid {worker.pid} did not subscribe in {timeout}s:\n{path.read_text(errors='replace')[-3000:]}"
        )

    def close(self) -> None:
        stop_processes(self.started)  # the API and the worker at once, then the stack's server
        self.stack.close()


def create_database(admin: PostgresServer, name: str) -> PostgresServer:
    admin_pg(admin, f"CREATE DATABASE {quote_ident(name, 'postgres')}")
    return admin.model_copy(update={"database": name})


def drop_database(admin: PostgresServer, name: str) -> None:
    admin_pg(admin, f"DROP DATABASE IF EXISTS {quote_ident(name, 'postgres')} WITH (FORCE)")


def start_service(
    home: Path,
    database: PostgresServer,
    *,
    worker_limit: int = 2,
    task_workers: int = 1,
    task_worker_limit: int = 2,
    extra_env: dict[str, str] | None = None,
    prefect_database_url: str | None = None,
    api_workers: int = 1,
) -> Service:
    """Server, pool, the process-data deployment, a worker, task workers and the API; all as subprocesses.
    ``prefect_database_url``: the Prefect server's database (default: SQLite in its home)."""
    stack = PrefectStack.start(
        home / "prefect",
        server_env=None
        if prefect_database_url is None
        else {"PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_database_url},
    )
    bucket_dir = home / "bucket"
    scripts_dir = home / "scripts"
    bucket_dir.mkdir()
    scripts_dir.mkdir()
    env = {
        **block_env("analytics-postgres", database),
        "CLINICFLOW_CREDENTIALS": "env",
        "CLINICFLOW_PROCESSING_BUCKET_KIND": "local",
        "CLINICFLOW_PROCESSING_FILES_BUCKET_PATH": str(bucket_dir),
        "CLINICFLOW_PROCESSING_SCRIPTS_DIR": str(scripts_dir),
        "CLINICFLOW_PROCESSING_DEPLOYMENT_MIN_ROWS": str(DEPLOYMENT_MIN_ROWS),
        "CLINICFLOW_PROCESSING_LEASE_SECONDS": str(LEASE_SECONDS),
        **(extra_env or {}),
    }
    service = Service(stack=stack, database=database, bucket_dir=bucket_dir, scripts_dir=scripts_dir, url="", env=env)
    try:
        stack.create_process_pool(POOL)
        copy = process_pool_copy_of_prefect_yaml(home / "prefect.yaml", POOL, credentials="env")
        deployed = stack.run(
            ["prefect", "--no-prompt", "deploy", "--name", "process-data", "--prefect-file", str(copy)],
            {"CLINICFLOW_IMAGE": TEST_IMAGE},
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        log = (stack.home / f"worker-{POOL}.log").open("wb")
        worker = subprocess.Popen(
            [
                str(BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                POOL,
                "--type",
                "process",
                "--limit",
                str(worker_limit),
            ],
            env=stack.env(env),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        service.started.append(worker)
        stack.worker = worker
        port = free_port()
        service.api_log = home / "api.log"
        api_log = service.api_log.open("wb")
        service.api = subprocess.Popen(
            [str(BIN / "clinicflow"), "serve", "--port", str(port), "--workers", str(api_workers)],
            env=stack.env({**env, "CLINICFLOW_API_TOKEN": TOKEN}),
            cwd=REPO,
            stdout=api_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        service.started.append(service.api)
        service.url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{service.url}/health", service.api, home / "api.log", timeout=300, ready=True)
        if task_workers:
            service.start_task_worker(task_workers, task_worker_limit)
        return service
    except BaseException:
        service.close()
        raise
