"""Runs one custom script: ``python -m clinicflow.processing.custom_runner request.json``.

Writes ``{"result": ...}`` or ``{"error": "..."}`` to the request's output path.
The error names the exception type and message (one line), never the data.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import traceback
from pathlib import Path


def run_request_file(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    output = Path(request["output"])

    def fail(message: str) -> int:
        output.write_text(json.dumps({"error": message}), encoding="utf-8")
        return 1

    import pandas as pd

    spec = importlib.util.spec_from_file_location(f"clinicflow_custom_{Path(request['script']).stem}",
                                                  request["script"])
    if spec is None or spec.loader is None:
        return fail("cannot load the script")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
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
        if request["format"] == "parquet":
            df = pd.read_parquet(request["data"])
        else:
            df = pd.read_csv(request["data"])
    except Exception as exc:  # noqa: BLE001
        return fail(f"cannot read {request['name']}: {type(exc).__name__}: {exc}")
    try:
        result = process(df, request["params"])
    except Exception as exc:  # noqa: BLE001
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return fail(f"process raised {type(exc).__name__}: {exc} (line {frame.lineno})")
    if not isinstance(result, dict):
        return fail(f"process returned {type(result).__name__}, expected dict")
    try:
        text = json.dumps({"result": result}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return fail(f"result is not JSON-serialisable: {exc}")
    output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_request_file(sys.argv[1]))
