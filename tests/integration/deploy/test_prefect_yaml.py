"""prefect.yaml: for each deployment, the Job the Kubernetes worker would submit.

Rendered with prefect-kubernetes' own ``KubernetesWorkerJobConfiguration``
(``from_template_and_values`` + ``prepare_for_flow_run``) from our base job
template and the deployment's job variables; no cluster.
"""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from typing import Any

import kubernetes_validate
import pytest
from prefect.client.schemas.objects import Flow, FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.utilities.schema_tools import validate as validate_schema
from prefect.utilities.templating import apply_values
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

from tests.integration.deploy.conftest import K8S, K8S_VERSIONS, REPO, load_yaml_documents

# Reads the well-known blocks that test_blocks_setup writes on the session's API: the same xdist group.
pytestmark = pytest.mark.xdist_group("prefect-blocks")

IMAGE = "registry.example.com/clinicflow:1.2.3"
DEPLOYMENTS = (
    "nightly",
    "nightly-tables",
    "nightly-clinic-a",
    "nightly-clinic-b",
    "replicate",
    "load",
    "cdc",
    "analyze-schema",
    "dicom-reports",
    "referral-providers",
    "procedures-daily",
    "ingest-files",
    "ingest-replay",
    "process-data",
    "dicom-reports-range",
    "ingest-files-prefix",
)
# Runs of these deployments are independent of each other (one processing request each).
CONCURRENT = {"process-data": 8}
# Fan-out children: throttled by a global concurrency limit, never by a deployment limit
# (children stuck in AwaitingConcurrencySlot, prefect#16027, #19403).
NO_DEPLOYMENT_LIMIT = ("nightly-tables", "dicom-reports-range", "ingest-files-prefix")

# Which Secrets each deployment reads its credentials from.
EXPECTED_SECRETS = {
    "nightly": {"clinicflow-opendental-source", "clinicflow-opendental-replication", "clinicflow-analytics-postgres"},
    "nightly-tables": {
        "clinicflow-opendental-source",
        "clinicflow-opendental-replication",
        "clinicflow-analytics-postgres",
    },
    # The pattern for several clinics: one deployment per clinic, reading that clinic's own Secret.
    "nightly-clinic-a": {"clinicflow-clinic-a"},
    "nightly-clinic-b": {"clinicflow-clinic-b"},
    "replicate": {"clinicflow-opendental-source", "clinicflow-opendental-replication"},
    "load": {"clinicflow-opendental-replication", "clinicflow-analytics-postgres"},
    "cdc": {"clinicflow-opendental-source", "clinicflow-opendental-replication", "clinicflow-analytics-postgres"},
    "analyze-schema": {"clinicflow-opendental-source"},
    "dicom-reports": {"clinicflow-dicom-reports-postgres", "clinicflow-dicom-reports-bucket"},
    "dicom-reports-range": {"clinicflow-dicom-reports-postgres", "clinicflow-dicom-reports-bucket"},
    "referral-providers": {"clinicflow-analytics-postgres"},
    "procedures-daily": {"clinicflow-analytics-postgres", "clinicflow-clickhouse"},
    "ingest-files": {"clinicflow-analytics-postgres", "clinicflow-ingest-sources", "clinicflow-ingest-llm"},
    "ingest-files-prefix": {"clinicflow-analytics-postgres", "clinicflow-ingest-sources", "clinicflow-ingest-llm"},
    "ingest-replay": {"clinicflow-analytics-postgres", "clinicflow-ingest-sources", "clinicflow-ingest-llm"},
    "process-data": {"clinicflow-analytics-postgres", "clinicflow-processing"},
}


def deployment(prefect_yaml: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [d for d in prefect_yaml["deployments"] if d["name"] == name]
    return found


def job_variables_at_deploy_time(prefect_yaml: dict[str, Any], name: str) -> dict[str, Any]:
    """The deployment's job variables after `prefect deploy` templating (the image step's output)."""
    variables = copy.deepcopy(deployment(prefect_yaml, name)["work_pool"]["job_variables"])
    return apply_values(variables, {"image": {"stdout": IMAGE}})


def render_job(base_job_template: dict[str, Any], job_variables: dict[str, Any], name: str) -> dict[str, Any]:
    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(base_job_template, job_variables)
    )
    flow = Flow(id=uuid.uuid4(), name=name)
    deployment_response = DeploymentResponse(id=uuid.uuid4(), name=name, flow_id=flow.id)
    flow_run = FlowRun(id=uuid.uuid4(), name=f"{name}-run", flow_id=flow.id, deployment_id=deployment_response.id)
    configuration.prepare_for_flow_run(flow_run, deployment=deployment_response, flow=flow)
    return configuration.job_manifest


def test_every_flow_has_a_deployment_on_the_kubernetes_pool(prefect_yaml: dict[str, Any]) -> None:
    names = [d["name"] for d in prefect_yaml["deployments"]]
    assert sorted(names) == sorted(DEPLOYMENTS)
    for item in prefect_yaml["deployments"]:
        assert item["work_pool"]["name"] == "clinicflow-k8s"
        assert "clinicflow" in item["tags"]
        if item["name"] in NO_DEPLOYMENT_LIMIT:
            assert "concurrency_limit" not in item, f"{item['name']}: fan-out children take no deployment limit"
            continue
        assert item["concurrency_limit"]["limit"] == CONCURRENT.get(item["name"], 1), (
            f"{item['name']}: two runs must never overlap"
        )
    nightly = deployment(prefect_yaml, "nightly")
    (schedule,) = nightly["schedules"]
    assert schedule["cron"]
    assert schedule["timezone"]
    assert schedule["active"] is True
    assert nightly["parameters"] == {"tables": None, "full_refresh": False, "skip_verification": False}
    # The code is in the image: the only pull step enters it.
    assert prefect_yaml["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_job_variables_fit_the_work_pool_schema(
    prefect_yaml: dict[str, Any], base_job_template: dict[str, Any], name: str
) -> None:
    variables = job_variables_at_deploy_time(prefect_yaml, name)
    errors = validate_schema(
        variables,
        base_job_template["variables"],
        raise_on_error=False,
        preprocess=True,
        ignore_required=True,
        allow_none_with_default=True,
    )
    assert not errors, [str(e) for e in errors]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_rendered_job(
    prefect_server: None, prefect_yaml: dict[str, Any], base_job_template: dict[str, Any], name: str
) -> None:
    # prefect_server: the job configuration resolves block references through an API client.
    variables = job_variables_at_deploy_time(prefect_yaml, name)
    job = render_job(base_job_template, variables, name)

    assert job["kind"] == "Job"
    assert job["metadata"]["namespace"] == "clinicflow"
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert job["spec"]["activeDeadlineSeconds"] == variables["active_deadline_seconds"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    # The worker's command: execute this flow run from the deployment.
    assert container["args"] == ["prefect", "flow-run", "execute"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CLINICFLOW_CREDENTIALS"]["value"] == "env"
    assert env["CLINICFLOW_TABLES_FILE"]["value"] == "/etc/clinicflow/tables.yml"
    assert "PREFECT__FLOW_RUN_ID" in env
    secrets = {source["secretRef"]["name"] for source in container["envFrom"]}
    assert secrets == EXPECTED_SECRETS[name]
    assert not any("PASSWORD" in key for key in env), "credentials come from Secrets, never as plain env"
    assert container["resources"] == {
        "requests": {"cpu": variables["cpu_request"], "memory": variables["memory_request"]},
        "limits": {"cpu": variables["cpu_limit"], "memory": variables["memory_limit"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/home/clinicflow/.prefect"]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert volumes[mounts["/etc/clinicflow"]["name"]]["configMap"]["name"] == "clinicflow-tables"
    assert mounts["/etc/clinicflow"]["readOnly"] is True

    # The submitted Job validates strictly, except for one upstream quirk:
    # prefect-kubernetes requires `parallelism`/`completions` inside the pod spec
    # (its manifest check insists on them there); the API server drops them.
    assert pod.pop("parallelism") == 1
    assert pod.pop("completions") == 1
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)


def test_every_secret_a_deployment_reads_has_a_template(prefect_yaml: dict[str, Any]) -> None:
    templates = {s["metadata"]["name"] for s in load_yaml_documents(K8S / "secrets.example.yaml")}
    for name in DEPLOYMENTS:
        wanted = {s["secretRef"]["name"] for s in job_variables_at_deploy_time(prefect_yaml, name)["env_from"]}
        assert wanted <= templates, f"{name}: no template for {sorted(wanted - templates)}"


def test_deploy_stops_when_no_image_is_given(prefect_yaml: dict[str, Any]) -> None:
    """The build step yields the image; unset, it fails instead of deploying an empty image."""
    from prefect.deployments.steps.utility import run_shell_script

    (step,) = prefect_yaml["build"]
    options = dict(step["prefect.deployments.steps.run_shell_script"])
    options.pop("id")
    env_without = {k: v for k, v in os.environ.items() if k != "CLINICFLOW_IMAGE"}
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env_without)
        with pytest.raises(RuntimeError, match="set CLINICFLOW_IMAGE"):
            asyncio.run(run_shell_script(**options))
        os.environ["CLINICFLOW_IMAGE"] = IMAGE
        assert asyncio.run(run_shell_script(**options))["stdout"] == IMAGE
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_no_deployment_names_an_entrypoint_outside_the_repository(prefect_yaml: dict[str, Any]) -> None:
    for item in prefect_yaml["deployments"]:
        path, _, function = item["entrypoint"].partition(":")
        assert function.isidentifier()
        assert (REPO / path).resolve().is_relative_to(REPO)


@pytest.mark.parametrize("name", ["nightly-clinic-a", "nightly-clinic-b"])
def test_a_clinic_deployment_names_blocks_its_secret_provides(prefect_yaml: dict[str, Any], name: str) -> None:
    """One deployment per clinic: the same flow, parameters naming the clinic's blocks, its Secret holding them."""
    import inspect

    from flows.nightly import nightly_etl

    item = deployment(prefect_yaml, name)
    assert item["entrypoint"] == deployment(prefect_yaml, "nightly")["entrypoint"]
    params = item["parameters"]
    assert set(params) <= set(inspect.signature(nightly_etl.fn).parameters)
    blocks = [params["source_block"], params["replica_block"], params["analytics_block"]]
    others = [
        deployment(prefect_yaml, other)["parameters"]
        for other in ("nightly-clinic-a", "nightly-clinic-b")
        if other != name
    ]
    assert not set(blocks) & {v for p in others for v in p.values()}, "clinics share no block and no limit"
    (secret_name,) = EXPECTED_SECRETS[name]
    (secret,) = [s for s in load_yaml_documents(K8S / "secrets.example.yaml") if s["metadata"]["name"] == secret_name]
    for block in blocks:
        prefix = "CLINICFLOW_" + block.upper().replace("-", "_") + "_"
        assert {prefix + k for k in ("HOST", "PORT", "USER", "PASSWORD", "DATABASE")} <= set(secret["stringData"])
