"""docker-compose.yml: the local stack is complete, pinned, and wired like the cluster."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from blocks.resolve import env_prefix
from blocks.setup import DEPLOYMENT_BLOCKS
from tests.integration.deploy.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_services_images_pinned_and_healthchecked(compose: dict) -> None:
    services = compose["services"]
    assert {"mariadb", "postgres", "prefect-server", "gcs", "setup", "worker"} <= set(services)
    for name, service in services.items():
        image = service["image"]
        if "build" in service:
            assert image == "clinicflow:dev", f"{name}: our own image"
        else:
            assert re.search(r":\d+\.\d+(\.\d+)?", image), f"{name}: image {image} is not pinned to a version"
    for name in ("mariadb", "postgres", "prefect-server"):
        assert services[name]["healthcheck"]["test"], name


def test_worker_and_setup_use_the_deployments_and_every_block(compose: dict) -> None:
    services = compose["services"]
    setup_command = " ".join(services["setup"]["command"])
    assert "clinicflow blocks setup --from-env" in setup_command
    assert "prefect --no-prompt deploy --all --pool clinicflow-local" in setup_command
    assert "prefect work-pool create clinicflow-local --type process" in setup_command
    assert services["worker"]["command"][:5] == ["prefect", "worker", "start", "--pool", "clinicflow-local"]
    assert services["worker"]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    for service in ("setup", "worker"):
        env = services[service]["environment"]
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        for block in DEPLOYMENT_BLOCKS:
            assert any(key.startswith(env_prefix(block)) for key in env), f"{service}: no variables for {block}"


def test_compose_cli_accepts_the_file() -> None:
    """Where a Compose CLI is installed (not on every machine), it must parse the file."""
    if shutil.which("docker-compose"):
        command = ["docker-compose", "-f", str(COMPOSE), "config", "-q"]
    else:
        pytest.skip("no docker-compose CLI on this machine (the structural tests above still ran)")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_custom_scripts_run_in_a_credential_free_runner_on_an_internal_network(compose: dict) -> None:
    runner = compose["services"]["clinicflow-script-runner"]
    assert runner["command"][:3] == ["python", "-m", "clinicflow.processing.script_server"]
    assert set(runner["environment"]) == {"CLINICFLOW_PROCESSING_SANDBOX"}  # no credential
    assert runner["read_only"] is True
    assert runner["cap_drop"] == ["ALL"]
    assert runner["networks"] == ["scripts"]
    assert compose["networks"]["scripts"]["internal"] is True
    assert "scripts" in compose["services"]["worker"]["networks"]
