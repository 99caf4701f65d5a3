"""Runs one custom script inside the sandbox: ``python -I custom_runner.py --request-fd N --tmp DIR [--uid U]``.

Self-contained (the standard library and pandas only): the sandbox holds no copy of the
repository. Its input: the request (script name, source, format, params) on fd N and the data
file as stdin. It sets the run's limits, reads the data, drops to the run's uid when given (root
only keeps the rights to do so until here), closes every other descriptor, then runs the script.
Its only output is one JSON document on the original stdout: ``{"result": ...}`` or
``{"error": "..."}``; a script's own prints go to stderr. The error names the exception type and
message (one line), never the data.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import sys
import traceback
import types
from typing import Any


def _emit(fd: int, document: dict[str, Any]) -> None:
    data = json.dumps(document, allow_nan=False).encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _drop_to(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("could not drop to the run's uid")


def run_script_request(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--request-fd", type=int, required=True)
    parser.add_argument("--tmp", required=True)
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--uid", type=int)
    args = parser.parse_args(argv)
    with os.fdopen(args.request_fd, "rb") as handle:
        request = json.loads(handle.read())
    # The result channel is a private copy of stdout; fd 1 becomes stderr so prints cannot corrupt it.
    result_fd = os.dup(1)
    os.dup2(2, 1)

    def fail(message: str) -> int:
        _emit(result_fd, {"error": message})
        return 1

    import pandas as pd

    try:
        with os.fdopen(0, "rb", closefd=False) as data:
            df = (
                pd.read_parquet(data)
                if request["format"] == "parquet"
                else pd.read_csv(data, **request.get("csv_options", {}))
            )
    except Exception as exc:  # noqa: BLE001 - any unreadable input is the run's failure, reported
        return fail(f"cannot read {request['name']}: {type(exc).__name__}: {exc}")
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)  # fd 0 again, now empty
    os.chdir(args.tmp)
    if args.uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (args.processes, args.processes))
        _drop_to(args.uid)
    os.closerange(3, result_fd)
    os.closerange(result_fd + 1, 1 << 16)
    name = request["script"]
    module = types.ModuleType(f"clinicflow_custom_{name}")
    module.__file__ = f"{name}.py"
    try:
        exec(compile(request["source"], f"{name}.py", "exec"), module.__dict__)  # the script is the job
    except Exception as exc:  # noqa: BLE001 - any import-time error is the script's failure
        return fail(f"import failed: {type(exc).__name__}: {exc}")
    process = getattr(module, "process", None)
    if not callable(process):
        return fail("defines no function process(df, params)")
    try:
        inspect.signature(process).bind(None, None)
    except TypeError:
        return fail("process must take (df, params)")
    try:
        result = process(df, request["params"])
    except MemoryError:
        return fail("process raised MemoryError: over the memory limit of the script's run")
    except Exception as exc:  # noqa: BLE001 - anything the user's script raises is its failure
        # The script's own line: the last frame in it, not the library line the error surfaced in (pandas').
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == module.__file__]
        where = f" (line {frames[-1].lineno} of {module.__file__})" if frames else ""
        return fail(f"process raised {type(exc).__name__}: {exc}{where}")
    if not isinstance(result, dict):
        return fail(f"process returned {type(result).__name__}, expected dict")
    try:
        _emit(result_fd, {"result": result})
    except (TypeError, ValueError) as exc:
        return fail(f"result is not JSON-serialisable: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script_request(sys.argv[1:]))
