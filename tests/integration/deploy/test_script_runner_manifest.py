"""k8s/script-runner.yaml: custom scripts run in pods that hold no credential and reach nothing."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.deploy.conftest import one
from tests.integration.deploy.test_prefect_yaml import deployment


def test_the_script_runner_holds_no_secret_and_is_locked_down(rendered_manifests: list[dict[str, Any]]) -> None:
    runner = one(rendered_manifests, "Deployment", "clinicflow-script-runner")
    spec = runner["spec"]["template"]["spec"]
    text = json.dumps(spec)
    assert "secretRef" not in text
    assert "secretKeyRef" not in text
    assert '"secret"' not in text
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "add" not in context["capabilities"]
    assert {e["name"]: e.get("value") for e in container["env"]}["CLINICFLOW_PROCESSING_SANDBOX"] == "process"
    assert "envFrom" not in container
    assert container["image"].startswith("registry.example.com/clinicflow:")


def test_a_network_policy_denies_the_script_runner_every_egress(rendered_manifests: list[dict[str, Any]]) -> None:
    runner = one(rendered_manifests, "Deployment", "clinicflow-script-runner")
    policy = one(rendered_manifests, "NetworkPolicy", "clinicflow-script-runner")
    labels = runner["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert "Egress" in policy["spec"]["policyTypes"]
    assert policy["spec"]["egress"] == []
    service = one(rendered_manifests, "Service", "clinicflow-script-runner")
    assert service["spec"]["selector"].items() <= labels.items()


def test_process_data_runs_scripts_through_the_script_runner(prefect_yaml: dict[str, Any]) -> None:
    env = deployment(prefect_yaml, "process-data")["work_pool"]["job_variables"]["env"]
    assert env["CLINICFLOW_PROCESSING_SCRIPT_RUNNER_URL"] == "http://clinicflow-script-runner:8790"
    assert env["CLINICFLOW_CREDENTIALS"] == "env"


def test_task_workers_run_scripts_through_the_script_runner(rendered_manifests: list[dict[str, Any]]) -> None:
    """The processing task workers hold the database Secret, as flow-run pods do: scripts run elsewhere."""
    workers = one(rendered_manifests, "Deployment", "clinicflow-processing-workers")
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CLINICFLOW_PROCESSING_SCRIPT_RUNNER_URL"] == "http://clinicflow-script-runner:8790"
