"""The dev-only package (demo data, generator, bench helpers) ships in neither the wheel nor the image,
and the product CLI works without it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ("clinicflow_dev", "tests", "bench")


def test_the_wheel_packages_only_product_code() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert set(packages) == {"clinicflow", "flows", "tasks", "blocks"}
    assert not set(packages) & set(DEV_ONLY)


def test_the_image_copies_no_dev_package() -> None:
    copies = [
        line
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip().upper().startswith(("COPY", "ADD"))
    ]
    assert copies, "the Dockerfile copies nothing?"
    assert not [
        line
        for line in copies
        for name in DEV_ONLY
        if name in line.split()[1:-1] or line.split()[-2:-1] == [f"{name}/"]
    ]
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert set(DEV_ONLY) <= set(ignored)


def test_the_cli_runs_without_the_dev_package(tmp_path: Path) -> None:
    """As in the image: only the wheel's packages exist; the product commands are there, the demo is not."""
    import shutil

    for package in ("clinicflow", "flows", "tasks", "blocks"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import sys\n"
        f"sys.path = [{str(tmp_path)!r}] + [p for p in sys.path if p not in ('', {str(ROOT)!r})]\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('clinicflow_dev') is None\n"
        "from typer.main import get_command\n"
        "from clinicflow.cli import app\n"
        "import clinicflow\n"
        "assert clinicflow.__file__.startswith(sys.path[0]), clinicflow.__file__\n"
        "print(','.join(sorted(get_command(app).commands)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    commands = set(out.stdout.strip().split(","))
    assert {"nightly", "load", "replicate", "analyze-schema", "dicom", "ingest", "serve", "status"} <= commands
    assert not {"demo", "generate-opendental"} & commands
