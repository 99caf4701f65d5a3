"""Every exception class the project defines derives from ClinicflowError (core/errors.py says so; this checks it)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from clinicflow.core.errors import ClinicflowError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("clinicflow", "blocks")


def _module_names() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if "__main__" not in parts:
                names.append(".".join(parts))
    return names


def exception_classes(module_name: str) -> list[type[BaseException]]:
    module = importlib.import_module(module_name)
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == module_name
    ]


def test_the_walk_finds_the_package_exceptions() -> None:
    found = {cls.__name__ for name in _module_names() for cls in exception_classes(name)}
    assert {"LoadError", "ConfigError", "TransientError", "DownloadError", "ToolkitError"} <= found


@pytest.mark.parametrize("module_name", _module_names())
def test_every_exception_derives_from_clinicflow_error(module_name: str) -> None:
    strays = [cls.__qualname__ for cls in exception_classes(module_name) if not issubclass(cls, ClinicflowError)]
    assert strays == [], f"{module_name}: {strays} must derive from clinicflow.core.errors.ClinicflowError"


def test_one_line_keeps_the_first_line_only_and_names_the_type() -> None:
    from clinicflow.core.errors import one_line

    exc = ValueError("duplicate key value\nDETAIL:  Key (id)=(42) already exists, name=Jane")
    assert one_line(exc) == "ValueError: duplicate key value"
    assert one_line(exc, with_type=False) == "duplicate key value"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(RuntimeError("x" * 500), limit=20) == "RuntimeError: xxxxx…"
    assert one_line(RuntimeError("x" * 500 + "\ny"), limit=None) == "RuntimeError: " + "x" * 500
