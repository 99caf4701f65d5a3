"""The command line's shape: every command a module-level function of clinicflow/cli (or clinicflow_dev)."""

from __future__ import annotations

import importlib

import typer

from clinicflow.cli import app

COMMANDS = {
    "nightly",
    "load",
    "replicate",
    "analyze-schema",
    "validate",
    "show",
    "serve",
    "status",
    "demo",
    "generate-opendental",
}
GROUPS = {
    "blocks": {"setup", "register"},
    "cdc": {"start", "status", "stop"},
    "fanout": {"setup"},
    "dicom": {"run", "demo", "status", "reset"},
    "ingest": {"run", "demo", "reextract"},
    "dlq": {"list", "show", "replay", "discard"},
    "pipelines": {"list", "show", "run", "sync", "backfill", "schema"},
    "processing": {"workers"},
}


def _callbacks(typer_app: typer.Typer) -> dict[str, object]:
    return {info.name or "": info.callback for info in typer_app.registered_commands}


def _is_module_level(function: object) -> bool:
    module = importlib.import_module(function.__module__)  # type: ignore[attr-defined]
    qualname = function.__qualname__  # type: ignore[attr-defined]
    return "<locals>" not in qualname and getattr(module, qualname, None) is function


def test_the_app_has_every_command_and_group() -> None:
    assert set(_callbacks(app)) == COMMANDS
    groups = {info.name: info.typer_instance for info in app.registered_groups}
    assert set(groups) == set(GROUPS)
    for name, sub_app in groups.items():
        assert sub_app is not None
        assert set(_callbacks(sub_app)) == GROUPS[name], name


def test_every_command_is_a_module_level_function() -> None:
    callbacks = list(_callbacks(app).values())
    for info in app.registered_groups:
        assert info.typer_instance is not None
        callbacks += _callbacks(info.typer_instance).values()
    nested = [f"{c.__module__}.{c.__qualname__}" for c in callbacks if not _is_module_level(c)]  # type: ignore[attr-defined]
    assert nested == []
    assert all(c.__module__.startswith(("clinicflow.cli.", "clinicflow_dev.")) for c in callbacks)  # type: ignore[attr-defined]


def test_the_checker_catches_a_nested_command() -> None:
    def register(target: typer.Typer) -> None:
        @target.command("nested")
        def nested_command() -> None:
            """A command defined inside a function."""

    probe = typer.Typer()
    register(probe)
    assert not _is_module_level(_callbacks(probe)["nested"])
