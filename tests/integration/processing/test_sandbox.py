"""The custom-script sandbox, each hostile script in each mode this machine offers (run_custom, no Prefect).

The same scripts run against the real service in test_api_hostile.py.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from clinicflow.processing import sandbox
from clinicflow.processing.base import DataSource, ProcessingError
from clinicflow.processing.custom import CustomParams, run_custom
from clinicflow.processing.processors import validate_request
from tests.integration.processing.hostile_scripts import HOSTILE, marker, processes_named

SECRET = "sentinel-secret-7f3a9c"


def _available(mode: str) -> bool:
    previous = os.environ.get("CLINICFLOW_PROCESSING_SANDBOX")
    os.environ["CLINICFLOW_PROCESSING_SANDBOX"] = mode
    try:
        return sandbox.active_mode() == mode
    finally:
        if previous is None:
            del os.environ["CLINICFLOW_PROCESSING_SANDBOX"]
        else:
            os.environ["CLINICFLOW_PROCESSING_SANDBOX"] = previous


# uid mode needs root and a Python other users can read (not this machine's /root/.pyenv; the image's /usr/local).
MODES = [
    pytest.param(m, marks=pytest.mark.skipif(not _available(m), reason=f"{m} sandbox not available here"))
    for m in ("bwrap", "uid")
]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CLINICFLOW_PROCESSING_SANDBOX", request.param)
    # A secret in the environment of the process that starts scripts: no script may see it.
    monkeypatch.setenv("CLINICFLOW_SANDBOX_TEST_PASSWORD", SECRET)
    assert sandbox.active_mode() == request.param
    return str(request.param)


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    folder = tmp_path / "scripts"
    folder.mkdir()
    for name, text in HOSTILE.items():
        (folder / f"{name}.py").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def source(tmp_path: Path) -> DataSource:
    path = tmp_path / "data.csv"
    pd.DataFrame({"a": [1, 2, 3]}).to_csv(path, index=False)
    return DataSource(path=path, name="data.csv", format="csv", row_count=3, columns=["a"])


def run(scripts: Path, source: DataSource, script: str, **values: object) -> dict[str, object]:
    params = validate_request("custom", {"script": script, **values}, scripts_dir=scripts)
    assert isinstance(params, CustomParams)
    return run_custom(source, params, lambda _p: None, scripts)["result"]  # type: ignore[return-value]


def test_no_secret_and_no_other_process_is_visible(mode: str, scripts: Path, source: DataSource) -> None:
    result = run(scripts, source, "steals_env")
    text = json.dumps(result)
    assert SECRET not in text
    assert "CLINICFLOW_" not in text
    assert "PREFECT_" not in text
    assert set(result["own"]) <= {*sandbox.SANDBOX_ENV, "PWD"}  # type: ignore[arg-type]
    if mode == "bwrap":
        assert len(result["pids"]) <= 3, result["pids"]  # type: ignore[arg-type]


def test_no_network_and_no_database(mode: str, scripts: Path, source: DataSource) -> None:
    result = run(scripts, source, "calls_out", params={"database": "postgres", "own": 0})
    if mode == "bwrap":
        assert all(v != "connected" for k, v in result.items() if k != "postgres"), result
    # Without namespaces the network stays (the pod's NetworkPolicy closes it); no credential reaches a script.
    assert result["postgres"] != "tampered", result


def test_no_file_written_outside_its_temp_dir(mode: str, scripts: Path, source: DataSource, tmp_path: Path) -> None:
    host_tmp = Path("/tmp") / f"clinicflow-sandbox-test-{os.urandom(4).hex()}"
    planted = scripts / "planted.py"
    outside = [str(host_tmp), str(planted), str(tmp_path / "beside.txt")]
    result = run(scripts, source, "writes_out", params={"paths": outside})
    assert result["/etc/shadow"] in ("FileNotFoundError", "PermissionError"), result  # never its length
    if mode == "bwrap":
        assert result["/etc/passwd"] in ("FileNotFoundError", "PermissionError"), result
    assert not planted.exists()
    assert not (tmp_path / "beside.txt").exists()
    if mode == "bwrap":
        assert not host_tmp.exists()  # its /tmp was a private tmpfs
    elif host_tmp.exists():  # uid mode: /tmp is world-writable (documented); the file is the run uid's, not ours
        assert host_tmp.stat().st_uid >= sandbox.RUN_UID_BASE
        host_tmp.unlink()
    with pytest.raises(Exception, match="no script 'planted'"):
        validate_request("custom", {"script": "planted"}, scripts_dir=scripts)


@pytest.mark.parametrize(("sleep", "timeout"), [(0.5, 60), (30, 2)], ids=["returns", "over-time-limit"])
def test_no_child_survives_the_run(mode: str, scripts: Path, source: DataSource, sleep: float, timeout: float) -> None:
    name = marker("fk")
    if timeout < sleep:
        with pytest.raises(ProcessingError, match="exceeded its time limit of 2 s"):
            run(scripts, source, "forks_away", params={"marker": name, "sleep": sleep}, timeout_seconds=timeout)
    else:
        assert run(scripts, source, "forks_away", params={"marker": name, "sleep": sleep}) == {"forked": 3}
    deadline = time.monotonic() + 10
    while processes_named(name) and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGKILL is delivered asynchronously; nothing waits on the killed
    assert processes_named(name) == []


def test_ten_gigabytes_fail_on_the_memory_limit(mode: str, scripts: Path, source: DataSource) -> None:
    with pytest.raises(ProcessingError, match="MemoryError"):
        run(scripts, source, "allocates")


def test_a_stderr_flood_is_drained_not_kept(mode: str, scripts: Path, source: DataSource) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert run(scripts, source, "floods_stderr", params={"mib": 300}) == {"flooded_mib": 300}
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024, f"the caller grew by {grown_kib} KiB"


def test_a_result_over_the_limit_fails(
    mode: str, scripts: Path, source: DataSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_PROCESSING_MAX_RESULT_MB", "1")
    with pytest.raises(ProcessingError, match="larger than the limit of 1048576 bytes"):
        run(scripts, source, "huge_result", params={"bytes": 5 * 1024 * 1024})


def test_a_script_writable_by_others_is_refused(scripts: Path) -> None:
    (scripts / "steals_env.py").chmod(0o666)
    with pytest.raises(Exception, match="writable by others"):
        validate_request("custom", {"script": "steals_env"}, scripts_dir=scripts)


def test_no_sandbox_no_script(scripts: Path, source: DataSource, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_PROCESSING_SANDBOX", "bwrap")
    monkeypatch.setenv("PATH", "/nonexistent")
    params = validate_request("custom", {"script": "steals_env"}, scripts_dir=scripts)
    assert sandbox.active_mode() == "unavailable"
    with pytest.raises(ProcessingError, match="no sandbox"):
        run_custom(source, params, lambda _p: None, scripts)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def script_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The script-runner service as its own process (as in its Kubernetes Deployment: process mode)."""
    from tests.integration.deploy.e2e_support import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("script-runner") / "runner.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "clinicflow.processing.script_server", "--port", str(port)],
            env={"PATH": os.environ["PATH"], "CLINICFLOW_PROCESSING_SANDBOX": "process"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).json()["sandbox"] == "process":
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url
    finally:
        server.kill()
        server.wait()


def test_the_script_runner_service_runs_scripts_without_the_callers_secrets(
    script_runner: str, scripts: Path, source: DataSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_PROCESSING_SCRIPT_RUNNER_URL", script_runner)
    monkeypatch.setenv("CLINICFLOW_SANDBOX_TEST_PASSWORD", SECRET)
    monkeypatch.setenv("CLINICFLOW_PROCESSING_SANDBOX", "bwrap")
    monkeypatch.setenv("PATH", "/nonexistent")  # no local sandbox: the run can only be the service's
    stolen = run(scripts, source, "steals_env")
    # Process mode: the pod is the sandbox (it holds only the server); here the host's processes stay visible.
    own = json.dumps(stolen["own"])
    assert SECRET not in own
    assert "CLINICFLOW_" not in own
    name = marker("sr")
    assert run(scripts, source, "forks_away", params={"marker": name}) == {"forked": 3}
    deadline = time.monotonic() + 10
    while processes_named(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_named(name) == []  # children in a new session were adopted and killed
    with pytest.raises(ProcessingError, match="MemoryError"):
        run(scripts, source, "allocates")
