"""Secret-named CLINICFLOW_* variables leave the process environment at CLI start and stay readable."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clinicflow.core import secret_env


def test_capture_moves_secrets_out_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_X_TEST_PASSWORD", "s3cret")
    monkeypatch.setenv("CLINICFLOW_X_TEST_HOST", "db.example")
    secret_env.capture()
    try:
        assert "CLINICFLOW_X_TEST_PASSWORD" not in os.environ and os.environ["CLINICFLOW_X_TEST_HOST"] == "db.example"
        assert secret_env.getenv("CLINICFLOW_X_TEST_PASSWORD") == "s3cret"
        assert "CLINICFLOW_X_TEST_PASSWORD" in secret_env.names()
        # A child process started by any library no longer inherits it.
        out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('CLINICFLOW_X_TEST_PASSWORD'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == "None"
        # A value set after start wins over the captured one.
        monkeypatch.setenv("CLINICFLOW_X_TEST_PASSWORD", "newer")
        assert secret_env.getenv("CLINICFLOW_X_TEST_PASSWORD") == "newer"
    finally:
        secret_env._captured.pop("CLINICFLOW_X_TEST_PASSWORD", None)
