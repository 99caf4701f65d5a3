"""The processing package is plain logic: importing every module of it loads no Prefect and no blocks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import clinicflow.processing

MODULES = sorted(p.stem for p in Path(clinicflow.processing.__file__).parent.glob("*.py") if p.stem != "__init__")


def test_processing_imports_no_prefect() -> None:
    code = ("import sys\n"
            + "".join(f"import clinicflow.processing.{m}\n" for m in MODULES)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'blocks', 'flows', 'tasks'))\n"
            + "print(','.join(bad))\n")
    assert {"processors", "store", "runner", "custom"} <= set(MODULES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
