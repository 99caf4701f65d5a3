"""Custom processors: ``process(df, params) -> dict`` scripts from one configured folder.

A script is named, never given as a path: the name must match
``^[a-z_][a-z0-9_]*$`` and ``<folder>/<name>.py`` must resolve (symlinks
followed) inside the folder. The signature is checked without executing the
script (its AST) when the request arrives, and again on the loaded function.
It runs in a subprocess (``python -m clinicflow.processing.custom_runner``)
with a time limit, so a crash, a hang or a memory blow-up of a script cannot
take the flow's process with it; its output must be JSON-serialisable.
"""
from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from clinicflow.processing.base import DataSource, ParamsModel, ProcessingError, ProgressFn

SCRIPT_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
DEFAULT_SCRIPTS_DIR = "processing_scripts"
# Python's reserved names cannot be module names either.
_RESERVED = frozenset({"__init__", "__main__"})


def scripts_dir_from_env() -> Path:
    """The scripts folder: ``CLINICFLOW_PROCESSING_SCRIPTS_DIR``, else ./processing_scripts."""
    return Path(os.environ.get("CLINICFLOW_PROCESSING_SCRIPTS_DIR") or DEFAULT_SCRIPTS_DIR)


def resolve_script(name: str, scripts_dir: Path) -> Path:
    """``<scripts_dir>/<name>.py`` when the name is allowed and the file is inside the folder; else ValueError."""
    if not SCRIPT_NAME.fullmatch(name) or name in _RESERVED:
        raise ValueError(f"script name {name!r} must match {SCRIPT_NAME.pattern}")
    folder = scripts_dir.resolve()
    path = (folder / f"{name}.py").resolve()
    if not path.is_relative_to(folder):
        raise ValueError(f"script {name!r} resolves outside the scripts folder")
    if not path.is_file():
        raise ValueError(f"no script {name!r} in the scripts folder")
    return path


def check_signature_source(path: Path) -> None:
    """The script defines a top-level ``process(df, params)``: read from its AST, nothing executed."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=path.name)
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise ValueError(f"script {path.stem!r} does not parse: {exc}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "process":
            positional = node.args.posonlyargs + node.args.args
            required_kw = [a for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=False) if d is None]
            if len(positional) - len(node.args.defaults) > 2 or (len(positional) < 2 and node.args.vararg is None) \
                    or required_kw:
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


def run_custom(source: DataSource, params: CustomParams, progress: ProgressFn,
               scripts_dir: Path | None = None) -> dict[str, Any]:
    """Run the script in a subprocess with the time limit; its dict result, or ProcessingError with the reason."""
    try:
        path = resolve_script(params.script, scripts_dir or scripts_dir_from_env())
        check_signature_source(path)
    except ValueError as exc:
        raise ProcessingError(f"parameters.script: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="clinicflow-custom-") as tmp:
        output = Path(tmp) / "result.json"
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps({"script": str(path), "data": str(source.path), "format": source.format,
                                       "name": source.name, "params": params.params, "output": str(output)}),
                           encoding="utf-8")
        process = subprocess.Popen([sys.executable, "-m", "clinicflow.processing.custom_runner", str(request)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                   preexec_fn=_die_with_parent)
        try:
            _, stderr = process.communicate(timeout=params.timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise ProcessingError(f"script {params.script!r} exceeded its time limit of "
                                  f"{params.timeout_seconds:g} s and was stopped") from None
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if output.exists():
            outcome = json.loads(output.read_text(encoding="utf-8"))
            if "error" in outcome:
                raise ProcessingError(f"script {params.script!r}: {outcome['error']}")
            progress(1.0)
            return {"processing_type": "custom", "script": params.script, "result": outcome["result"]}
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] if stderr else []
        raise ProcessingError(f"script {params.script!r} ended with exit code {process.returncode} "
                              f"and no result{': ' + tail[0] if tail else ''}")


def _die_with_parent() -> None:
    """Linux: the script's process gets SIGKILL when the flow's process dies (no orphaned script)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
