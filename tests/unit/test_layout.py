"""The package's shape, enforced: the import rule, module size, and one public name per thing.

- The library (``clinicflow/`` except the entry points ``clinicflow/cli`` and ``clinicflow/service``) never
  imports Prefect, the blocks, the flows, the tasks, or the dev-only package, not even inside a function:
  it takes the Protocols of ``clinicflow/connectors/protocols.py``, which the blocks satisfy.
- The OpenDental loader (``opendental/warehouse``) never imports the replicator (``opendental/replication``).
- No module of ``clinicflow/`` is over 400 lines; no two modules define the same public function or class.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clinicflow"
ENTRY_POINTS = ("cli", "service")
FORBIDDEN = (
    "prefect",
    "prefect_gcp",
    "prefect_aws",
    "prefect_sqlalchemy",
    "prefect_kubernetes",
    "blocks",
    "flows",
    "tasks",
    "clinicflow_dev",
    "bench",
    "tests",
)
MAX_LINES = 400
# Modules whose length is data (literals), not logic; none today.
LONG_DATA_MODULES: frozenset[str] = frozenset()


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _library_modules() -> list[Path]:
    return [p for p in _modules() if p.relative_to(PACKAGE).parts[0] not in ENTRY_POINTS]


def _dotted(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Every module an import statement names, at any depth of the file (function-level imports too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def import_violations(path: Path, source: str, forbidden: tuple[str, ...] = FORBIDDEN) -> list[str]:
    rel = path.relative_to(ROOT) if path.is_absolute() else path
    return [
        f"{rel}:{line} imports {name}" for line, name in imported_modules(source) if name.split(".")[0] in forbidden
    ]


def test_the_rule_checker_catches_a_function_level_import() -> None:
    source = "def f():\n    from prefect import flow\n    import blocks.databases\n"
    assert import_violations(Path("clinicflow/x.py"), source) == [
        "clinicflow/x.py:2 imports prefect",
        "clinicflow/x.py:3 imports blocks.databases",
    ]
    assert import_violations(Path("clinicflow/x.py"), "import prefecture\nfrom clinicflow.core import sql\n") == []


def test_library_never_imports_prefect_blocks_flows_or_tasks() -> None:
    library = _library_modules()
    assert len(library) > 60, "the library's modules were not found"
    violations = [v for p in library for v in import_violations(p, p.read_text(encoding="utf-8"))]
    assert violations == [], "\n".join(violations)


def test_importing_the_whole_library_loads_no_prefect() -> None:
    """The same rule at run time, in a fresh interpreter (nothing this test session imported can hide one)."""
    code = (
        "import importlib, sys\n"
        + "".join(f"importlib.import_module({_dotted(p)!r})\n" for p in _library_modules())
        + f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"the library loads {out.stdout.strip()}"


def test_the_loader_never_imports_the_replicator() -> None:
    warehouse = [p for p in _modules() if p.relative_to(PACKAGE).parts[:2] == ("opendental", "warehouse")]
    assert warehouse
    violations = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in warehouse
        for line, name in imported_modules(p.read_text(encoding="utf-8"))
        if name.startswith("clinicflow.opendental.replication")
    ]
    assert violations == [], "\n".join(violations)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_at_most_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if _dotted(path) in LONG_DATA_MODULES:
        return
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES}): split it"


def public_definitions(paths: list[Path]) -> dict[str, list[str]]:
    """Module-level public functions and classes, by name, with the modules that define them."""
    names: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            is_definition = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if is_definition and not node.name.startswith("_"):
                names[node.name].append(_dotted(path))
    return names


def test_no_two_modules_define_the_same_public_name() -> None:
    shared = {name: where for name, where in public_definitions(_modules()).items() if len(where) > 1}
    assert shared == {}, "\n".join(f"{name}: {', '.join(where)}" for name, where in sorted(shared.items()))
