"""How clinicflow runs Prefect when no Prefect API is configured.

Local runs, the demo, the benches and the CronJob fallback run their flows on
Prefect's embedded server: a throw-away server started by this process and
gone with it. Four Prefect defaults cost time there and buy nothing:

* the server registers every installed block type at start, seconds of its
  start-up; credentials come from the environment in this mode, and a
  block that is saved registers its own type anyway;
* with registration off, the server's memoizing wrapper around it still imports
  every installed Prefect collection (prefect-gcp, prefect-aws,
  prefect-kubernetes) to hash the block registry, and only then calls the
  registration that returns at once: seconds more of the server's start;
* the server sends telemetry: pods have no internet, so it only logs an error;
* each flow run starts a heartbeat thread that sleeps in 1-second steps and is
  joined when the run ends, so every flow call waits up to 1 s after its work
  is done. Heartbeats let a server mark crashed runs; an embedded server dies
  with the process, so nobody could read them.

Prefect starts that server as a child process and stops it at exit; a
parent killed by SIGKILL or the OOM killer never gets there, and the server
(~180 MB) ran on forever, reparented to init. Here it is started through a
small wrapper whose watcher thread ends the server as soon as its parent
process is gone (its parent pid changes), whichever thread started it, and
with an environment that carries no ``CLINICFLOW_*`` variable or password.

With ``PREFECT_API_URL`` set (deployments, a local Prefect server) nothing here
changes Prefect's behaviour, except the one setting every run needs: ``RUN_LOG_ENV``
routes the library's ``clinicflow`` loggers into the run's logs (clinicflow.core.logs).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from clinicflow.core import settings

# Read by Prefect when it is first imported (it configures logging then): set before that, wherever flows
# run. The same pair is in the Dockerfile, prefect.yaml (job_env), k8s/cronjob-nightly.yaml and tests/conftest.py.
RUN_LOG_ENV = {
    # Prefect attaches its API log handler to these loggers: library messages land in the run's logs.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "clinicflow",
    # Outside a run (CLI, service) library messages only go to the console, without a warning each.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}

# Read by Prefect when it is first imported: set them before that.
EMBEDDED_ENV_DEFAULTS = {
    # The embedded server needs more than Prefect's default 20 s on a busy 2-core pod.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def route_library_logs() -> None:
    """Set ``RUN_LOG_ENV`` (values the user set win); before Prefect is first imported."""
    for name, value in RUN_LOG_ENV.items():
        os.environ.setdefault(name, value)


def prepare_embedded_environment() -> None:
    """``route_library_logs``, and the embedded-server defaults above unless a Prefect API is configured;
    values the user set win."""
    route_library_logs()
    if settings.prefect_api_url():
        return
    for name, value in EMBEDDED_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


# Runs uvicorn as ``python -m uvicorn`` would, plus a thread that ends the server once the process that
# started it (argv[1]) is gone: SIGTERM for uvicorn's orderly shutdown, then a hard exit 5 s later.
_SERVER_WRAPPER = """
import os, runpy, signal, sys, threading, time

parent = int(sys.argv[1])
def watch():
    while os.getppid() == parent:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    os._exit(1)
threading.Thread(target=watch, daemon=True, name="clinicflow-parent-watch").start()
sys.argv = ["uvicorn", *sys.argv[2:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""

# Never handed to the embedded server: it needs none of them.
_SECRET_NAME = re.compile(
    r"^CLINICFLOW_|PASSWORD|PASSWD|SECRET|TOKEN|^MYSQL_PWD$|^PGPASS|^AWS_|^GOOGLE_APPLICATION_CREDENTIALS$"
)


def server_environment(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` without credentials (Prefect's own settings are kept)."""
    return {
        name: value
        for name, value in environ.items()
        if name.startswith("PREFECT_") or not _SECRET_NAME.search(name.upper())
    }


def _guarded_server_class() -> Any:
    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class GuardedServer(SubprocessASGIServer):
        """Prefect's embedded server, started through the wrapper above (same arguments as Prefect 3.9's)."""

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            env = {
                **os.environ,
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                **get_current_settings().to_environment_variables(exclude_unset=True),
            }
            return subprocess.Popen(
                args=[
                    sys.executable,
                    "-c",
                    _SERVER_WRAPPER,
                    str(os.getpid()),
                    "--app-dir",
                    str(prefect.__module_path__.parent),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env=server_environment(env),
            )

    return GuardedServer


def guard_embedded_server() -> None:
    """Make the embedded server Prefect starts (in any thread, later) one that dies with this process."""
    from prefect.server.api.server import SubprocessASGIServer

    if None not in SubprocessASGIServer._instances:
        _guarded_server_class()()  # registers itself as the default instance Prefect's clients ask for


@contextlib.contextmanager
def flow_run_settings() -> Iterator[None]:
    """Wrap a flow call: with no Prefect API, flow-run heartbeats are off and the embedded server is guarded."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    guard_embedded_server()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def flow_run_id() -> str:
    """The id of the current flow run (a new uuid outside one): what a run records its rows under."""
    import uuid

    from prefect.runtime import flow_run

    return str(flow_run.get_id() or uuid.uuid4())
