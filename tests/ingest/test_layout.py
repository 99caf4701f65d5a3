"""The ingestion library is plain logic: importing every module of it loads no Prefect, blocks, flows or tasks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import clinicflow.ingest

MODULES = sorted(p.stem for p in Path(clinicflow.ingest.__file__).parent.glob("*.py") if p.stem != "__init__")


def test_ingest_library_imports_no_prefect() -> None:
    code = ("import sys\n"
            + "".join(f"import clinicflow.ingest.{m}\n" for m in MODULES)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'blocks', 'flows', 'tasks'))\n"
            + "print(','.join(bad))\n")
    assert {"patterns", "stores", "pipeline", "extractors", "deadletter", "synthetic", "db"} <= set(MODULES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
