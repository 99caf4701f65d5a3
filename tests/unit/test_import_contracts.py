"""The layer contracts of pyproject.toml ([tool.importlinter]) hold, and they catch an upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("clinicflow", "flows", "tasks", "blocks")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_tree(target: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_contracts_hold_on_the_tree() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout


def test_a_planted_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "clinicflow" / "core" / "planted.py").write_text("from clinicflow.opendental import chunks\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    assert "clinicflow.core.planted -> clinicflow.opendental.chunks" in result.stdout


def test_a_planted_prefect_import_breaks_the_library_contract(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "clinicflow" / "toolkit" / "planted.py").write_text("def f():\n    import prefect\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    assert "clinicflow.toolkit.planted -> prefect" in result.stdout
