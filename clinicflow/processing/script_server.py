"""The script-runner service: custom scripts run in their own pods, which hold no credential at all.

``python -m clinicflow.processing.script_server [--host 0.0.0.0] [--port 8790]`` (Kubernetes:
``k8s/script-runner-deployment.yaml``: no Secret, non-root, read-only root, no capabilities, egress
denied). A flow run with ``CLINICFLOW_PROCESSING_SCRIPT_RUNNER_URL`` set sends ``POST /run``:
``X-Clinicflow-Request-Length: N``, then a body of the N-byte request (script name and source,
format, params) followed by the data file; the answer is the run's outcome (exit status, the
runner's JSON document up to the result limit, the end of stderr), which the flow checks and
stores as it does for a local run. One run at a time per process (scale with replicas); after
each run every process it left is killed (the server is their subreaper).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from clinicflow.connectors.http import redact
from clinicflow.processing import sandbox, teardown
from clinicflow.processing.datafiles import max_upload_bytes

RUNNER = Path(__file__).with_name("custom_runner.py")
BLOCK = 1 << 20
MAX_REQUEST_BYTES = 16 << 20
log = logging.getLogger("clinicflow.processing")


def run_remote(url: str, request: bytes, data: Path, timeout: float) -> sandbox.Outcome:
    """One script run by the script-runner service at ``url``; its outcome (RuntimeError if unreachable)."""
    import httpx

    def body() -> Iterator[bytes]:
        yield request
        with open(data, "rb") as handle:
            while block := handle.read(BLOCK):
                yield block

    size = len(request) + data.stat().st_size
    try:
        response = httpx.post(
            url.rstrip("/") + "/run",
            content=body(),
            timeout=timeout + 60,
            headers={
                "X-Clinicflow-Request-Length": str(len(request)),
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
            },
        )
    except httpx.HTTPError as exc:
        raise RuntimeError(f"script runner {redact(url)} unreachable: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise RuntimeError(f"script runner {redact(url)} answered {response.status_code}: {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return sandbox.Outcome(
        returncode=int(answer["returncode"]),
        stdout=answer["stdout"].encode("utf-8"),
        stderr_tail=answer["stderr_tail"].encode("utf-8"),
        timed_out=bool(answer["timed_out"]),
        stdout_over_limit=bool(answer["stdout_over_limit"]),
    )


class _Handler(BaseHTTPRequestHandler):
    server_version = "clinicflow-script-runner"

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # http.server's naming
        if self.path == "/health":
            mode = sandbox.active_mode()
            self._answer(200 if mode != "unavailable" else 503, {"status": "ok", "sandbox": mode})
        else:
            self._answer(404, {"detail": "not found"})

    def do_POST(self) -> None:
        if self.path != "/run":
            self._answer(404, {"detail": "not found"})
            return
        try:
            total = int(self.headers.get("Content-Length", ""))
            head = int(self.headers.get("X-Clinicflow-Request-Length", ""))
        except ValueError:
            self._answer(411, {"detail": "Content-Length and X-Clinicflow-Request-Length are required"})
            return
        limit = max_upload_bytes()
        if not 0 < head <= MAX_REQUEST_BYTES or not head <= total <= head + limit:
            self._answer(413, {"detail": f"request at most {MAX_REQUEST_BYTES} bytes, data at most {limit} bytes"})
            return
        request = self.rfile.read(head)
        try:
            timeout = float(json.loads(request).get("timeout_seconds", 300))
        except (ValueError, AttributeError):
            self._answer(400, {"detail": "the request is not a JSON object"})
            return
        with tempfile.TemporaryDirectory(prefix="clinicflow-script-data-") as tmp:
            data = Path(tmp) / "data"
            with open(data, "wb") as out:
                left = total - head
                while left > 0 and (block := self.rfile.read(min(BLOCK, left))):
                    out.write(block)
                    left -= len(block)
            mode = sandbox.active_mode()
            if mode == "unavailable":
                self._answer(503, {"detail": sandbox.describe_mode(mode)})
                return
            try:
                outcome = sandbox.run_request(
                    mode, RUNNER, request, data, limits=sandbox.Limits.from_env(), timeout=min(timeout, 3600)
                )
            finally:
                teardown.kill_adopted_children()
        self._answer(
            200,
            {
                "returncode": outcome.returncode,
                "stdout": outcome.stdout.decode("utf-8", "replace"),
                "stderr_tail": outcome.stderr_tail.decode("utf-8", "replace"),
                "timed_out": outcome.timed_out,
                "stdout_over_limit": outcome.stdout_over_limit,
            },
        )

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        log.info("script runner: %s", format % args)


def serve(host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    teardown.become_subreaper()
    sandbox.log_mode()
    server = HTTPServer((host, port), _Handler)
    log.info("script runner on http://%s:%s (one run at a time)", host, server.server_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def script_server_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    script_server_main()
