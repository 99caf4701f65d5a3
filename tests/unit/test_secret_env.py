"""Secret-named CLINICFLOW_* variables leave the process environment at CLI start and stay readable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clinicflow.core import secret_env


def test_capture_moves_secrets_out_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_X_TEST_PASSWORD", "fake-sentinel-not-a-credential-16")
    monkeypatch.setenv("CLINICFLOW_X_TEST_HOST", "db.example")
    secret_env.capture()
    try:
        assert "CLINICFLOW_X_TEST_PASSWORD" not in os.environ
        assert os.environ["CLINICFLOW_X_TEST_HOST"] == "db.example"
        assert secret_env.getenv("CLINICFLOW_X_TEST_PASSWORD") == "fake-sentinel-not-a-credential-16"
        assert "CLINICFLOW_X_TEST_PASSWORD" in secret_env.names()
        # A child process started by any library no longer inherits it.
        out = subprocess.run(
            [sys.executable, "-c", "import os; print(os.environ.get('CLINICFLOW_X_TEST_PASSWORD'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == "None"
        # A value set after start wins over the captured one.
        monkeypatch.setenv("CLINICFLOW_X_TEST_PASSWORD", "newer")
        assert secret_env.getenv("CLINICFLOW_X_TEST_PASSWORD") == "newer"
    finally:
        secret_env._captured.pop("CLINICFLOW_X_TEST_PASSWORD", None)


def test_the_cli_reexecutes_itself_without_secrets_in_its_start_up_environment() -> None:
    """/proc/PID/environ is the start-up environment: after the re-exec it holds no secret."""
    code = (
        "import os; from clinicflow.core import secret_env; secret_env.capture_and_reexec(); "
        "environ = open(f'/proc/{os.getpid()}/environ', 'rb').read(); "
        "print(b'fake-sentinel-not-a-credential-16-sentinel' in environ, b'CLINICFLOW_SECRETS_FD' in environ, "
        "secret_env.getenv('CLINICFLOW_X_TEST_PASSWORD'), os.environ.get('CLINICFLOW_X_TEST_HOST'), "
        "len(os.listdir('/proc/self/fd')))"
    )
    env = {
        **os.environ,
        "CLINICFLOW_X_TEST_PASSWORD": "fake-sentinel-not-a-credential-16-sentinel",
        "CLINICFLOW_X_TEST_HOST": "db.example",
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    in_environ, fd_in_environ, value, host, _fds = done.stdout.split()
    assert (in_environ, value, host) == ("False", "fake-sentinel-not-a-credential-16-sentinel", "db.example")
    assert fd_in_environ == "True"  # the pipe's number only: the secrets themselves came through the pipe


def test_handover_gives_a_child_the_captured_secrets_on_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """`processing workers --concurrency N` starts its task workers this way: they connect, /proc holds none."""
    monkeypatch.setenv("CLINICFLOW_X_TEST_PASSWORD", "fake-sentinel-not-a-credential-16-handed-over")
    secret_env.capture()
    try:
        code = (
            "import os; from clinicflow.core import secret_env; secret_env.capture_and_reexec(); "
            "environ = open(f'/proc/{os.getpid()}/environ', 'rb').read(); "
            "print(b'fake-sentinel-not-a-credential-16-handed-over' in environ, "
            "secret_env.getenv('CLINICFLOW_X_TEST_PASSWORD'))"
        )
        env, pipe = secret_env.handover(dict(os.environ))
        assert pipe is not None
        try:
            done = subprocess.run(
                [sys.executable, "-c", code], env=env, pass_fds=(pipe,), capture_output=True, text=True, check=True
            )
        finally:
            os.close(pipe)
        assert done.stdout.split() == ["False", "fake-sentinel-not-a-credential-16-handed-over"]
    finally:
        secret_env._captured.pop("CLINICFLOW_X_TEST_PASSWORD", None)
