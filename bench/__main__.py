"""Run every bench with its defaults: ``uv run --frozen python -m bench`` (long: minutes each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

for path in sorted(Path(__file__).parent.glob("bench_*.py")):
    print(f"=== {path.stem} ===", flush=True)
    subprocess.run([sys.executable, "-m", f"bench.{path.stem}"], check=False)
