"""k8s/: every manifest passes kubernetes-validate --strict, and says what the brief requires."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.integration.deploy.conftest import K8S, K8S_VERSIONS, REPO, by_kind, load_yaml_documents, one

MANIFEST_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def pod_spec_of(resource: dict[str, Any]) -> dict[str, Any]:
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return resource["spec"]["template"]["spec"]


def test_every_file_and_the_kustomize_build_validate_strictly(rendered_manifests: list[dict[str, Any]]) -> None:
    documents = [(f"kustomize build: {m['kind']}/{m['metadata']['name']}", m) for m in rendered_manifests]
    for path in MANIFEST_FILES:
        documents += [(f"{path.name}: {d['kind']}/{d['metadata']['name']}", d) for d in load_yaml_documents(path)]
    assert {d["kind"] for _, d in documents} >= {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "CronJob",
        "ConfigMap",
        "Secret",
    }
    for version in K8S_VERSIONS:
        for label, document in documents:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{label} fails kubernetes-validate --strict for {version}: {exc.message}")


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator is live: a misspelt field in our CronJob fails strict validation."""
    cronjob = copy.deepcopy(load_yaml_documents(K8S / "cronjob-nightly.yaml")[0])
    cronjob["spec"]["concurencyPolicy"] = "Forbid"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cronjob, K8S_VERSIONS[-1], strict=True)


def test_kubernetes_validate_cli_strict_passes_on_the_files(
    tmp_path: Path, rendered_manifests: list[dict[str, Any]]
) -> None:
    import yaml

    built = tmp_path / "built.yaml"
    built.write_text(yaml.safe_dump_all(rendered_manifests), encoding="utf-8")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "kubernetes-validate"),
            "--strict",
            "-k",
            K8S_VERSIONS[0],
            str(built),
            *map(str, MANIFEST_FILES),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR" not in done.stdout


def test_base_job_template_is_regenerated_from_the_installed_prefect_kubernetes() -> None:
    done = subprocess.run(
        [sys.executable, str(K8S / "base_job_template.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr


def test_worker_role_grants_only_what_the_worker_calls(rendered_manifests: list[dict[str, Any]]) -> None:
    assert not by_kind(rendered_manifests, "ClusterRole")
    assert not by_kind(rendered_manifests, "ClusterRoleBinding")
    role = one(rendered_manifests, "Role", "clinicflow-worker")
    grants = {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert grants == {
        ("batch", "jobs"): sorted(["create", "get", "list", "watch", "delete"]),
        ("", "pods"): sorted(["get", "list", "watch"]),
        ("", "pods/log"): ["get"],
    }
    binding = one(rendered_manifests, "RoleBinding", "clinicflow-worker")
    assert binding["roleRef"]["name"] == "clinicflow-worker"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "clinicflow-worker", "namespace": "clinicflow"}]
    worker = one(rendered_manifests, "Deployment", "clinicflow-worker")
    spec = pod_spec_of(worker)
    assert spec["serviceAccountName"] == "clinicflow-worker"
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    # The observer must watch this namespace only: the Role grants nothing cluster-wide.
    assert (
        env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.namespace"
    )


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", "clinicflow-worker"), ("CronJob", "clinicflow-nightly-fallback")]
)
def test_workloads_are_non_root_read_only_with_writable_prefect_home_and_tmp(
    rendered_manifests: list[dict[str, Any]], kind: str, name: str
) -> None:
    spec = pod_spec_of(one(rendered_manifests, kind, name))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    for key in ("requests", "limits"):
        assert set(container["resources"][key]) == {"cpu", "memory"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for path in ("/home/clinicflow/.prefect", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]], f"{kind} {name}: {path} is not an emptyDir"
    assert container["image"].startswith("registry.example.com/clinicflow:")


def test_cronjob_fallback_runs_nightly_without_prefect_api(rendered_manifests: list[dict[str, Any]]) -> None:
    cronjob = one(rendered_manifests, "CronJob", "clinicflow-nightly-fallback")
    worker = one(rendered_manifests, "Deployment", "clinicflow-worker")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] >= 0
    assert cronjob["spec"]["suspend"] is True, "the fallback must not double the Prefect-scheduled night"
    spec = pod_spec_of(cronjob)
    (container,) = spec["containers"]
    assert container["image"] == pod_spec_of(worker)["containers"][0]["image"], "same image as the worker"
    assert container["command"] == ["clinicflow", "nightly"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "PREFECT_API_URL" not in env, "the fallback must run in Prefect's embedded mode"
    assert env["CLINICFLOW_CREDENTIALS"] == "env"
    assert env["CLINICFLOW_TABLES_FILE"] == "/etc/clinicflow/tables.yml"
    secret_names = {s["metadata"]["name"] for s in load_yaml_documents(K8S / "secrets.example.yaml")}
    refs = [source["secretRef"]["name"] for source in container["envFrom"]]
    assert set(refs) == {
        "clinicflow-opendental-source",
        "clinicflow-opendental-replication",
        "clinicflow-analytics-postgres",
    }
    assert set(refs) <= secret_names, "every Secret the CronJob reads has a template"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tables"]["configMap"]["name"] == "clinicflow-tables"
    assert spec["automountServiceAccountToken"] is False


def test_tables_configmap_is_generated_from_the_repository_tables_yml(rendered_manifests: list[dict[str, Any]]) -> None:
    config_map = one(rendered_manifests, "ConfigMap", "clinicflow-tables")
    assert config_map["data"]["tables.yml"] == (REPO / "tables.yml").read_text(encoding="utf-8")
    template_map = one(rendered_manifests, "ConfigMap", "clinicflow-base-job-template")
    assert template_map["data"]["base-job-template.json"] == (K8S / "base-job-template.json").read_text()


def test_secret_templates_hold_no_secret_and_are_not_applied_by_kustomize(
    rendered_manifests: list[dict[str, Any]],
) -> None:
    assert not by_kind(rendered_manifests, "Secret"), "kubectl apply -k must never overwrite real Secrets"
    for secret in load_yaml_documents(K8S / "secrets.example.yaml"):
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            if any(word in key.lower() for word in ("password", "key", "auth")):
                assert value == "", f"{secret['metadata']['name']}.{key} must be blank in the template"


def test_processing_task_workers_scale_out_on_the_same_image(rendered_manifests: list[dict[str, Any]]) -> None:
    workers = one(rendered_manifests, "Deployment", "clinicflow-processing-workers")
    prefect_worker = one(rendered_manifests, "Deployment", "clinicflow-worker")
    assert workers["spec"]["replicas"] >= 2
    (container,) = pod_spec_of(workers)["containers"]
    assert container["image"] == pod_spec_of(prefect_worker)["containers"][0]["image"], "same image"
    assert container["command"][:3] == ["clinicflow", "processing", "workers"]
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    env = {e["name"]: e for e in container["env"]}
    assert "PREFECT_API_URL" in set(env)
    # No task-scheduling storage: a background run has no parameters and persists no result.
    assert "PREFECT_TASKS_SCHEDULING_DEFAULT_STORAGE_BLOCK" not in env
    assert pod_spec_of(workers)["securityContext"]["runAsNonRoot"] is True


def test_every_secret_and_config_key_a_pod_reads_exists(rendered_manifests: list[dict[str, Any]]) -> None:
    """The processing workers read a GCS bucket kind from a ConfigMap but not the bucket's name, which only the
    `clinicflow-processing` Secret holds: they restarted forever on a missing setting in pods shown Running."""
    secrets = {
        d["metadata"]["name"]: set(d.get("stringData") or d.get("data") or {})
        for d in load_yaml_documents(K8S / "secrets.example.yaml")
        if d["kind"] == "Secret"
    }
    maps = {m["metadata"]["name"]: set(m.get("data") or {}) for m in by_kind(rendered_manifests, "ConfigMap")}
    for resource in [m for m in rendered_manifests if m["kind"] in ("Deployment", "CronJob")]:
        label = f"{resource['kind']}/{resource['metadata']['name']}"
        for container in pod_spec_of(resource)["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                ref = source.get("secretRef") or source.get("configMapRef") or {}
                known = secrets if "secretRef" in source else maps
                assert ref.get("optional") or ref["name"] in known, f"{label}: no {ref['name']}"
                names |= known.get(ref["name"], set())
            for entry in container.get("env", []):
                for kind, known in (("secretKeyRef", secrets), ("configMapKeyRef", maps)):
                    ref = (entry.get("valueFrom") or {}).get(kind)
                    if ref and not ref.get("optional"):
                        assert ref["key"] in known.get(ref["name"], set()), f"{label}: {ref['name']}/{ref['key']}"
            if "processing" in container.get("command", []) and "workers" in container.get("command", []):
                # What a gcs/s3 files bucket needs to be built (blocks/resolve.py's env builders).
                assert {"CLINICFLOW_PROCESSING_BUCKET_KIND", "CLINICFLOW_PROCESSING_FILES_BUCKET_BUCKET"} <= names, (
                    label
                )
