"""Custom processors: ``process(df, params) -> dict`` scripts from one configured folder.

A script is named, never given as a path: the name must match
``^[a-z_][a-z0-9_]*$`` and ``<folder>/<name>.py`` must resolve (symlinks
followed) inside the folder. The signature is checked without executing the
script (its AST) when the request arrives, and again on the loaded function.
It runs in :mod:`clinicflow.processing.sandbox` (no credentials, no network,
no database or Prefect connection, limits on time, memory, processes and
output): the runner gets the script's source, the params and the data file as
stdin and answers with one bounded JSON document that this side checks. A
script file must not be writable by anyone but its owner (the service's user
or root), so a script run under another uid cannot plant or change one.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from clinicflow.core import settings
from clinicflow.processing import sandbox
from clinicflow.processing.base import DataSource, ParamsModel, ProcessingError, ProgressFn
from clinicflow.processing.csv_dialect import csv_file_options

SCRIPT_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
DEFAULT_SCRIPTS_DIR = "processing_scripts"
# Python's reserved names cannot be module names either.
_RESERVED = frozenset({"__init__", "__main__"})
RUNNER = Path(__file__).with_name("custom_runner.py")
MAX_SCRIPT_NAME = 100


def scripts_dir_from_env() -> Path:
    """The scripts folder: ``CLINICFLOW_PROCESSING_SCRIPTS_DIR``, else ./processing_scripts."""
    return settings.processing_scripts_dir() or Path(DEFAULT_SCRIPTS_DIR)


def script_runner_url() -> str | None:
    """``CLINICFLOW_PROCESSING_SCRIPT_RUNNER_URL``: scripts run by that script-runner service, not here."""
    return settings.processing_script_runner_url()


def resolve_script(name: str, scripts_dir: Path) -> Path:
    """``<scripts_dir>/<name>.py`` when the name is allowed and the file is inside the folder; else ValueError."""
    if len(name) > MAX_SCRIPT_NAME:
        raise ValueError(f"script name longer than {MAX_SCRIPT_NAME} characters")
    if not SCRIPT_NAME.fullmatch(name) or name in _RESERVED:
        raise ValueError(f"script name {name!r} must match {SCRIPT_NAME.pattern}")
    folder = scripts_dir.resolve()
    path = (folder / f"{name}.py").resolve()
    if not path.is_relative_to(folder):
        raise ValueError(f"script {name!r} resolves outside the scripts folder")
    if not path.is_file():
        raise ValueError(f"no script {name!r} in the scripts folder")
    for checked in (folder, path):
        info = checked.stat()
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or info.st_uid not in (0, os.geteuid()):
            raise ValueError(
                f"script {name!r} refused: {'the folder' if checked == folder else 'the file'} is "
                "writable by others or not owned by the service's user"
            )
    return path


def check_signature_source(path: Path, text: str | None = None) -> None:
    """The script defines a top-level ``process(df, params)``: read from its AST, nothing executed."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text, filename=path.name)
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise ValueError(f"script {path.stem!r} does not parse: {exc}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "process":
            positional = node.args.posonlyargs + node.args.args
            required_kw = [a for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=False) if d is None]
            if (
                len(positional) - len(node.args.defaults) > 2
                or (len(positional) < 2 and node.args.vararg is None)
                or required_kw
            ):
                raise ValueError(f"script {path.stem!r}: process must take (df, params)")
            return
    raise ValueError(f"script {path.stem!r} defines no top-level function process(df, params)")


class CustomParams(ParamsModel):
    script: str = Field(description="Script name in the scripts folder, without .py.")
    params: dict[str, Any] = Field(default_factory=dict, description="Passed to process(df, params).")
    timeout_seconds: float = Field(default=300, gt=0, le=3600, description="Time limit of the script's run.")

    @field_validator("script")
    @classmethod
    def _script_in_folder(cls, name: str, info: ValidationInfo) -> str:
        folder = (info.context or {}).get("scripts_dir") or scripts_dir_from_env()
        check_signature_source(resolve_script(name, Path(folder)))
        return name


def run_custom(
    source: DataSource,
    params: CustomParams,
    progress: ProgressFn,
    scripts_dir: Path | None = None,
    still_wanted: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the script in the sandbox with the time limit; its dict result, or ProcessingError with the reason.

    ``still_wanted`` is called while a local sandbox runs; what it raises (the row was deleted) stops the script."""
    try:
        path = resolve_script(params.script, scripts_dir or scripts_dir_from_env())
        text = path.read_text(encoding="utf-8")
        check_signature_source(path, text)
    except ValueError as exc:
        raise ProcessingError(f"parameters.script: {exc}") from None
    limits = sandbox.Limits.from_env()
    request = json.dumps(
        {
            "script": params.script,
            "source": text,
            "format": source.format,
            "csv_options": csv_file_options(source.path)._asdict() if source.format == "csv" else {},
            "name": source.name,
            "params": params.params,
            "timeout_seconds": params.timeout_seconds,
        }
    ).encode("utf-8")
    if url := script_runner_url():
        from clinicflow.processing.script_server import run_remote

        outcome = run_remote(url, request, source.path, params.timeout_seconds)
    else:
        mode = sandbox.active_mode()
        if mode == "unavailable":
            raise ProcessingError(f"script {params.script!r} not run: no sandbox: {sandbox.describe_mode(mode)}")
        outcome = sandbox.run_request(
            mode, RUNNER, request, source.path, limits=limits, timeout=params.timeout_seconds, poll=still_wanted
        )
    label = f"script {params.script!r}"
    if outcome.timed_out:
        raise ProcessingError(f"{label} exceeded its time limit of {params.timeout_seconds:g} s and was stopped")
    if outcome.stdout_over_limit:
        raise ProcessingError(
            f"{label}: result larger than the limit of {limits.result_bytes} bytes "
            "(CLINICFLOW_PROCESSING_MAX_RESULT_MB)"
        )
    try:
        document = json.loads(outcome.stdout) if outcome.stdout else None
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        raise ProcessingError(f"{label}: {document['error'][:2000]}")
    if isinstance(document, dict) and isinstance(document.get("result"), dict) and outcome.returncode == 0:
        progress(1.0)
        return {"processing_type": "custom", "script": params.script, "result": document["result"]}
    what = "output that is not one JSON result" if outcome.stdout else "no result"
    raise ProcessingError(
        f"{label} ended {_exit_reason(outcome.returncode, limits)} and {what}{_stderr_line(outcome.stderr_tail)}"
    )


def _exit_reason(returncode: int, limits: sandbox.Limits) -> str:
    if returncode >= 0:
        return f"with exit code {returncode}"
    name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
    hint = {
        "SIGXCPU": " (CPU time limit)",
        "SIGXFSZ": f" (file size limit of {limits.file_bytes} bytes)",
        "SIGKILL": f" (memory limit of {limits.memory_bytes} bytes or killed)",
    }.get(name, "")
    return f"by signal {name}{hint}"


def _stderr_line(tail: bytes) -> str:
    lines = tail.decode("utf-8", "replace").strip().splitlines()
    return f": {lines[-1][:500]}" if lines else ""
