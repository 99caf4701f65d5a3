"""Fixtures of the deployment tests: the repository's deploy files, parsed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"
# Kubernetes versions the manifests must validate against: the oldest minor
# we support (CronJob timeZone is GA since 1.27) and the newest the installed
# kubernetes-validate ships schemas for.
K8S_VERSIONS = ("1.30.0", "1.37.0")


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomize_build() -> list[dict[str, Any]]:
    """``kubectl kustomize k8s`` (tables.yml comes from the repository root, hence the load restrictor)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (with its built-in kustomize) is needed to build k8s/: install kubectl")
    done = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(K8S)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"kubectl kustomize k8s failed: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def rendered_manifests() -> list[dict[str, Any]]:
    return kustomize_build()


@pytest.fixture(scope="session")
def base_job_template() -> dict[str, Any]:
    return json.loads((K8S / "base-job-template.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]
