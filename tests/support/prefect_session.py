"""One real ``prefect server start`` for the whole test session, shared by every pytest-xdist worker.

The first process that needs the server starts it under a file lock in a session folder that the
controlling pytest process creates (its path travels to the xdist workers in the environment);
the others find its URL there and reuse it. The controller stops it when the session ends, after
every worker is done. Without xdist the one pytest process is both.

Integration tests see it as ``PREFECT_API_URL`` (this process's Prefect settings and os.environ, so
subprocesses inherit it) for the whole session: no test depends on whether an earlier one
started it. Unit tests never start it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SESSION_DIR_VAR = "CLINICFLOW_TEST_SESSION_DIR"
START_TIMEOUT = 300  # seconds: a server start on a loaded 2-core machine


def server_env() -> dict[str, str]:
    """This process's environment without Prefect or clinicflow settings, for the server process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLINICFLOW_"))}
    env.update(
        {
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_CLI_PROMPT": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def session_dir() -> Path:
    return Path(os.environ[SESSION_DIR_VAR])


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def shared_api_url() -> str:
    """The session server's API URL, starting the server if no process of this session has yet."""
    from clinicflow_dev.demo_service import free_port, start_prefect_server, wait_healthy

    folder = session_dir()
    with (folder / "prefect.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url_file = folder / "prefect-api-url"
        if url_file.exists():
            url = url_file.read_text().strip()
            if _healthy(url):
                return url
            raise RuntimeError(
                f"the session's Prefect server at {url} stopped answering; its log: {folder / 'prefect' / 'server.log'}"
            )
        port = free_port()
        url = f"http://127.0.0.1:{port}/api"
        home = folder / "prefect"
        database = _create_server_database(folder)
        env = {**server_env(), "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{PG_HOST}/{database}"}
        server = start_prefect_server(home, port, env)
        (folder / "prefect-pid").write_text(str(server.pid))
        wait_healthy(f"{url}/health", server, home / "server.log", timeout=START_TIMEOUT)
        url_file.write_text(url)
        return url


# The session server keeps its state in PostgreSQL, not SQLite: both xdist workers, their flow runs and
# process workers write at once, and SQLite answers "database is locked" (503) that clients back off 2-32 s from.
PG_HOST = "postgres@127.0.0.1:5432"


def _admin_connection() -> Any:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    return conn


def _create_server_database(folder: Path) -> str:
    name = f"cf_prefect_session_{uuid.uuid4().hex[:10]}"
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    (folder / "prefect-database").write_text(name)
    return name


def _drop_server_database(folder: Path) -> None:
    name_file = folder / "prefect-database"
    if not name_file.exists():
        return
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name_file.read_text().strip()}" WITH (FORCE)')
    finally:
        conn.close()


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (reaped here when this process is its parent, else no longer signalable)."""
    try:
        return os.waitpid(pid, os.WNOHANG) != (0, 0)
    except ChildProcessError:  # started by an xdist worker: not our child
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def stop_session_server(folder: Path) -> None:
    """Stop the session's server (its whole process group), then remove the session folder."""
    pid_file = folder / "prefect-pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while not _gone(pid):
                if time.monotonic() > deadline:
                    os.killpg(pid, signal.SIGKILL)
                    break
                time.sleep(0.1)
        except ProcessLookupError:
            pass
    with contextlib.suppress(Exception):  # a database left behind never fails the session
        _drop_server_database(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests in an ``xdist_group`` run in file order (after pytest-randomly's shuffle): a group is a declared
    sequence on one module-wide stack. Under ``--dist loadgroup`` the group's name is added to their node ids,
    which is how xdist keeps a group on one worker (xdist 3.8 sets an attribute pytest 9.2 no longer reads)."""
    from _pytest.nodeid import NodeId

    grouped: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if item.get_closest_marker("xdist_group") is not None:
            grouped.setdefault(str(item.path), []).append(index)
    for positions in grouped.values():
        in_file_order = sorted((items[i] for i in positions), key=lambda item: item.location[1])
        for position, item in zip(positions, in_file_order, strict=True):
            items[position] = item
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or os.environ.get(SESSION_DIR_VAR):
        return  # an xdist worker (or a pytest run inside a test session): the controller owns the folder
    folder = Path(tempfile.mkdtemp(prefix="clinicflow-tests-"))
    os.environ[SESSION_DIR_VAR] = str(folder)

    def cleanup() -> None:
        if "prefect.logging.handlers" in sys.modules:  # this process's queued run logs reach the server first
            with contextlib.suppress(Exception):  # logs we could not send do not fail the session
                sys.modules["prefect.logging.handlers"].APILogHandler().flush()
        stop_session_server(folder)
        os.environ.pop(SESSION_DIR_VAR, None)

    config.add_cleanup(cleanup)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """The session's Prefect API: PREFECT_API_URL in this process's settings and in os.environ."""
    from prefect.context import SettingsContext, _temporary_global_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = shared_api_url()
    with pytest.MonkeyPatch.context() as env, temporary_settings(updates={PREFECT_API_URL: url}):
        env.setenv("PREFECT_API_URL", url)
        # Threads (a test's thread pool, Prefect's own) read the process-global settings context, made at
        # import: replace it too, as prefect_test_harness does, or they fall back to an ephemeral server.
        with _temporary_global_settings_context(SettingsContext.get()):  # type: ignore[arg-type]
            yield


def stop_processes(processes: list[subprocess.Popen], timeout: float = 20) -> None:
    """Stop processes started in their own process groups: SIGTERM to all of them first, then one
    shared wait, then SIGKILL to whatever is left (a worker's flow-run children go with it)."""
    alive = [p for p in processes if p.poll() is None]
    for process in alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in alive:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in alive:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
