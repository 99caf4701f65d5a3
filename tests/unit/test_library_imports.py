"""The libraries of the new subsystems are plain logic: importing every module loads no Prefect, blocks, flows or tasks.

One test per package (issue 14 extends the rule to the whole of ``clinicflow``); each runs in a fresh
interpreter, so nothing the test session imported hides an import.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = {
    "clinicflow.toolkit": {"http", "clickhouse", "compose", "discovery"},
    "clinicflow.ingest": {"patterns", "stores", "pipeline", "extractors", "deadletter", "synthetic", "db"},
    "clinicflow.processing": {"processors", "store", "runner", "custom"},
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_library_imports_no_prefect(package: str) -> None:
    folder = Path(importlib.import_module(package).__file__).parent  # type: ignore[arg-type]
    modules = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    assert PACKAGES[package] <= set(modules)
    code = ("import sys\n"
            + "".join(f"import {package}.{m}\n" for m in modules)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'blocks', 'flows', 'tasks'))\n"
            + "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{package} imports {out.stdout.strip()}"
