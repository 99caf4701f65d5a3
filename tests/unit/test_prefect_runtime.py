"""The embedded-server defaults apply only when no Prefect API is configured, and never override the user."""
from __future__ import annotations

import os

import pytest

from flows import runtime


def test_embedded_defaults_without_an_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    for name in runtime.EMBEDDED_ENV_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")  # the user's choice stays
    runtime.prepare_embedded_environment()
    assert os.environ["PREFECT_API_BLOCKS_REGISTER_ON_START"] == "false"
    assert os.environ["PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION"] == "false"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"


def test_nothing_changes_with_an_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    for name in runtime.EMBEDDED_ENV_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    runtime.prepare_embedded_environment()
    assert not any(name in os.environ for name in runtime.EMBEDDED_ENV_DEFAULTS)


def test_the_embedded_server_gets_no_credentials() -> None:
    environ = {"PATH": "/usr/bin", "HOME": "/home/x", "PREFECT_HOME": "/p", "PREFECT_API_DATABASE_CONNECTION_URL": "x",
               "CLINICFLOW_OPENDENTAL_SOURCE_PASSWORD": "s", "CLINICFLOW_CREDENTIALS": "env", "MYSQL_PWD": "s",
               "PGPASSWORD": "s", "AWS_SECRET_ACCESS_KEY": "s", "GITHUB_TOKEN": "s", "my_secret": "s"}
    assert runtime.server_environment(environ) == {
        "PATH": "/usr/bin", "HOME": "/home/x", "PREFECT_HOME": "/p", "PREFECT_API_DATABASE_CONNECTION_URL": "x"}
