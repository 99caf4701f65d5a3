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
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/x",
        "PREFECT_HOME": "/p",
        "PREFECT_API_DATABASE_CONNECTION_URL": "x",
        "CLINICFLOW_OPENDENTAL_SOURCE_PASSWORD": "s",
        "CLINICFLOW_CREDENTIALS": "env",
        "MYSQL_PWD": "s",
        "PGPASSWORD": "s",
        "AWS_SECRET_ACCESS_KEY": "s",
        "GITHUB_TOKEN": "s",
        "my_secret": "s",
    }
    assert runtime.server_environment(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/home/x",
        "PREFECT_HOME": "/p",
        "PREFECT_API_DATABASE_CONNECTION_URL": "x",
    }


@pytest.mark.parametrize("api_url", [None, "http://prefect.example:4200/api"])
def test_library_logs_are_routed_to_run_logs_with_or_without_an_api(
    monkeypatch: pytest.MonkeyPatch, api_url: str | None
) -> None:
    if api_url is None:
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
    else:
        monkeypatch.setenv("PREFECT_API_URL", api_url)
    monkeypatch.delenv("PREFECT_LOGGING_EXTRA_LOGGERS", raising=False)
    monkeypatch.setenv("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "warn")  # the user's choice stays
    runtime.prepare_embedded_environment()
    assert os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] == "clinicflow"
    assert os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] == "warn"


def test_every_place_flows_run_routes_library_logs() -> None:
    """The image, every deployment's job variables and the CronJob set RUN_LOG_ENV as flows/runtime.py does."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    dockerfile = (root / "Dockerfile").read_text()
    for name, value in runtime.RUN_LOG_ENV.items():
        assert f"{name}={value}" in dockerfile, name
    for deployment in yaml.safe_load((root / "prefect.yaml").read_text())["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert {k: env.get(k) for k in runtime.RUN_LOG_ENV} == runtime.RUN_LOG_ENV, deployment["name"]
    cronjob = yaml.safe_load((root / "k8s" / "cronjob-nightly.yaml").read_text())
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert {k: env.get(k) for k in runtime.RUN_LOG_ENV} == runtime.RUN_LOG_ENV


def test_library_loggers_live_under_the_clinicflow_namespace() -> None:
    from clinicflow.core.logs import get_logger

    assert get_logger().name == "clinicflow"
    assert get_logger("clinicflow.dicom").name == "clinicflow.dicom"
    assert get_logger("flows.process_data").name == "clinicflow.flows.process_data"
    assert get_logger("clinicflowish").name == "clinicflow.clinicflowish"
