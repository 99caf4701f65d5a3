"""A real local Prefect stack for the end-to-end tests: server, work pools, deploy, worker.

Everything runs as subprocesses with the project's own CLIs (`prefect`,
`clinicflow`), the way an operator would run them, against a Prefect server
on a free loopback port with its own PREFECT_HOME and SQLite database.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clinicflow_dev.demo_service import (
    ProcessExited,
    create_process_pool,
    free_port,
    start_prefect_server,
    stop_process_group,
    wait_healthy,
)
from tests.support.prefect_session import stop_processes

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
PROCESS_POOL = "e2e-process"
K8S_POOL = "clinicflow-k8s"
TEST_IMAGE = "registry.example.com/clinicflow:e2e"


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any Prefect or clinicflow settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "CLINICFLOW_")) and k != "STORAGE_EMULATOR_HOST"
    }
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_CLI_PROMPT": "false",
        }
    )
    env.update(extra or {})
    return env


# The demo's service start-up (product code) is the one way to start and stop these processes.
stop = stop_process_group
ServerExited = ProcessExited


@dataclass
class PrefectStack:
    """A running Prefect server (and, once started, a worker) owned by a test module."""

    home: Path
    api_url: str
    server: subprocess.Popen
    logs: Path
    worker: subprocess.Popen | None = None
    started: list[subprocess.Popen] = field(default_factory=list)
    snapshots: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, home: Path, timeout: float = 120, server_env: dict[str, str] | None = None) -> PrefectStack:
        """Start the server; once more if it exits while starting (seen on a machine shared by
        several test runs), with its log in the error if the second start fails too.
        ``server_env``: more settings of the server (e.g. its database)."""
        try:
            return cls._start_once(home, timeout, server_env)
        except ServerExited:
            return cls._start_once(home / "retry", timeout, server_env)

    @classmethod
    def _start_once(cls, home: Path, timeout: float, server_env: dict[str, str] | None = None) -> PrefectStack:
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        logs = home / "server.log"
        server = start_prefect_server(home, port, clean_env(server_env))
        stack = cls(home=home, api_url=api_url, server=server, logs=logs)
        try:
            wait_healthy(f"{api_url}/health", server, logs, timeout)
        except ProcessExited:
            raise
        except RuntimeError:  # no answer in time: the server is still running
            stack.close()
            raise
        return stack

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # Workers poll for scheduled runs every second (Prefect's default is 10): a run starts at once.
        return clean_env(
            {
                "PREFECT_HOME": str(self.home / "client"),
                "PREFECT_API_URL": self.api_url,
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                **(extra or {}),
            }
        )

    def run(
        self, args: list[str], extra_env: dict[str, str] | None = None, timeout: float = 240, cwd: Path = REPO
    ) -> subprocess.CompletedProcess:
        executable = str(BIN / args[0]) if (BIN / args[0]).exists() else args[0]
        return subprocess.run(
            [executable, *args[1:]], env=self.env(extra_env), cwd=cwd, capture_output=True, text=True, timeout=timeout
        )

    def create_process_pool(self, name: str) -> None:
        create_process_pool(self.api_url, name)

    def start_worker(self, pool: str, extra_env: dict[str, str]) -> None:
        log = (self.home / f"worker-{pool}.log").open("wb")
        self.worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--limit", "2"],
            env=self.env(extra_env),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(self.worker)

    def worker_log(self, pool: str) -> str:
        path = self.home / f"worker-{pool}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        # Workers (and their flow runs) first, all signalled at once; then the server they talk to.
        stop_processes(self.started)
        stop_processes([self.server])


def process_pool_copy_of_prefect_yaml(target: Path, pool: str, credentials: str = "blocks") -> Path:
    """prefect.yaml as shipped, but on a local process pool running the code of this checkout.

    Only what cannot work outside Kubernetes changes: the pool, and the pull
    step (the image's /app becomes this repository). ``credentials`` picks the
    resolver's source inside the flow runs.
    """
    config = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    config = copy.deepcopy(config)
    config["pull"] = [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    for deployment in config["deployments"]:
        deployment["work_pool"]["name"] = pool
        deployment["work_pool"]["job_variables"]["env"] = {
            **deployment["work_pool"]["job_variables"].get("env", {}),
            "CLINICFLOW_CREDENTIALS": credentials,
        }
        # The script-runner Service exists in the cluster only: here scripts run in the local sandbox.
        deployment["work_pool"]["job_variables"]["env"].pop("CLINICFLOW_PROCESSING_SCRIPT_RUNNER_URL", None)
        # Our emitted YAML has no anchors left; the schedules would fire during the test.
        for schedule in deployment.get("schedules") or []:
            schedule["active"] = False
    config.pop("definitions", None)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


def block_env(name: str, server: Any) -> dict[str, str]:
    """CLINICFLOW_<NAME>_* variables for a MySQLServer / PostgresServer block."""
    prefix = "CLINICFLOW_" + name.upper().replace("-", "_") + "_"
    return {
        prefix + "HOST": server.host,
        prefix + "PORT": str(server.port),
        prefix + "USER": server.username,
        prefix + "PASSWORD": server.password.get_secret_value(),
        prefix + "DATABASE": server.database,
    }


def deployments_on_server(stack: PrefectStack) -> list[dict[str, Any]]:
    import json

    request = urllib.request.Request(
        f"{stack.api_url}/deployments/filter", data=b"{}", method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
