"""Build k8s/base-job-template.json from prefect-kubernetes' own default.

The work pool's base job template is derived, not hand-written: we start
from ``KubernetesWorker.get_default_base_job_template()`` of the installed
prefect-kubernetes and apply clinicflow's hardening on top, so an upgrade of
prefect-kubernetes shows up as a diff of the generated JSON (the deploy tests
fail until the committed file is regenerated):

    uv run --frozen python k8s/base_job_template.py          # rewrite the JSON
    uv run --frozen python k8s/base_job_template.py --check  # exit 1 if stale

What is added to the default, and why:
- pod and container security context: non-root (the image's uid 10001),
  read-only root file system, no privilege escalation, all capabilities
  dropped, RuntimeDefault seccomp; no service-account token by default (flow
  runs never call the Kubernetes API);
- ``PREFECT_HOME`` and ``/tmp`` on ``emptyDir`` volumes (the only writable
  places: Prefect's local state, per-chunk temp files, DICOM conversions);
- tables.yml from the ``clinicflow-tables`` ConfigMap (kustomize generates it
  from the repository's tables.yml) at ``/etc/clinicflow/tables.yml``;
- ``envFrom`` as a job variable (``env_from``), so each deployment names the
  Kubernetes Secrets it reads its credentials from;
- resource requests/limits, ``ttlSecondsAfterFinished`` and an optional
  ``activeDeadlineSeconds`` with defaults a deployment may override.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

TEMPLATE_FILE = Path(__file__).resolve().parent / "base-job-template.json"

APP_UID = 10001  # the image's non-root user (Dockerfile)
PREFECT_HOME = "/home/clinicflow/.prefect"  # the image's PREFECT_HOME
TABLES_DIR = "/etc/clinicflow"
TABLES_CONFIG_MAP = "clinicflow-tables"

# Variables clinicflow adds to the default ones (JSON schema, as Prefect wants).
EXTRA_VARIABLES: dict[str, dict[str, Any]] = {
    "env_from": {
        "title": "Environment from Secrets",
        "description": "Kubernetes envFrom sources of the flow-run container, e.g. "
        '[{"secretRef": {"name": "clinicflow-opendental-source"}}]. '
        "clinicflow's credentials come from these Secrets.",
        "type": "array",
        "items": {"type": "object"},
        "default": [],
    },
    "active_deadline_seconds": {
        "title": "Active Deadline Seconds",
        "description": "Kubernetes stops the Job after this many seconds (unset: no deadline).",
        "anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
        "default": None,
    },
    "tmp_size_limit": {
        "title": "Temp Space Limit",
        "description": "sizeLimit of the emptyDir mounted at /tmp (chunk files, DICOM conversions).",
        "type": "string",
        "default": "4Gi",
    },
    "automount_service_account_token": {
        "title": "Mount Service Account Token",
        "description": "Flow runs never call the Kubernetes API; turn on only if your cloud identity "
        "(e.g. workload identity) needs the token.",
        "type": "boolean",
        "default": False,
    },
    "tables_config_map": {
        "title": "tables.yml ConfigMap",
        "description": "ConfigMap holding tables.yml, mounted at /etc/clinicflow.",
        "type": "string",
        "default": TABLES_CONFIG_MAP,
    },
}

# Defaults for variables prefect-kubernetes already declares.
VARIABLE_DEFAULTS: dict[str, Any] = {
    "namespace": "clinicflow",
    "image_pull_policy": "IfNotPresent",
    "backoff_limit": 0,  # Prefect owns retries; an evicted pod's run is rescheduled by Prefect.
    "finished_job_ttl": 86400,  # a day to read the pod's logs, then Kubernetes removes the Job.
    "cpu_request": "500m",
    "cpu_limit": "2",
    "memory_request": "1Gi",
    "memory_limit": "2Gi",
    "env": {"CLINICFLOW_TABLES_FILE": f"{TABLES_DIR}/tables.yml"},
}


def default_template() -> dict[str, Any]:
    """prefect-kubernetes' default base job template, as the installed package makes it."""
    from prefect_kubernetes.worker import KubernetesWorker

    return copy.deepcopy(KubernetesWorker.get_default_base_job_template())


def build_template(default: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default template with clinicflow's hardening applied."""
    template = default_template() if default is None else copy.deepcopy(default)
    manifest = template["job_configuration"]["job_manifest"]
    job_spec = manifest["spec"]
    job_spec["activeDeadlineSeconds"] = "{{ active_deadline_seconds }}"
    pod_spec = job_spec["template"]["spec"]
    pod_spec["automountServiceAccountToken"] = "{{ automount_service_account_token }}"
    pod_spec["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": APP_UID,
        "runAsGroup": APP_UID,
        "fsGroup": APP_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod_spec["volumes"] = [
        {"name": "prefect-home", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "{{ tmp_size_limit }}"}},
        {"name": "tables", "configMap": {"name": "{{ tables_config_map }}"}},
    ]
    (container,) = pod_spec["containers"]
    container["envFrom"] = "{{ env_from }}"
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    container["volumeMounts"] = [
        {"name": "prefect-home", "mountPath": PREFECT_HOME},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "tables", "mountPath": TABLES_DIR, "readOnly": True},
    ]

    variables = template["variables"]
    variables["description"] = (
        "Variables of clinicflow's Kubernetes work pool: prefect-kubernetes' defaults "
        "plus env_from, active_deadline_seconds, tmp_size_limit, "
        "automount_service_account_token, tables_config_map "
        "(generated by k8s/base_job_template.py)."
    )
    properties = variables["properties"]
    for name, default_value in VARIABLE_DEFAULTS.items():
        if name not in properties:
            raise KeyError(f"prefect-kubernetes' template no longer declares variable {name!r}")
        properties[name]["default"] = default_value
    properties.update(copy.deepcopy(EXTRA_VARIABLES))
    return template


def render_json(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    text = render_json(build_template())
    if "--check" in argv:
        current = TEMPLATE_FILE.read_text(encoding="utf-8") if TEMPLATE_FILE.exists() else ""
        if current != text:
            print(f"{TEMPLATE_FILE} is stale: run `uv run --frozen python k8s/base_job_template.py`", file=sys.stderr)
            return 1
        return 0
    TEMPLATE_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {TEMPLATE_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
