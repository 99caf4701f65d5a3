"""Fixtures for the DICOM reports tests: real local servers, no mocks.

- ``file_server``: an ``http.server`` in a thread serving a folder, able to
  inject 404/403/500/429/slow/reset responses per path and counting requests;
- ``gcs_emulator``, ``s3_server``: the session's servers (tests/support/services.py, re-exported here);
- ``test_files``: pydicom's and pydicom-data's test files (offline), plus bad
  files generated here (empty, not DICOM, truncated, short pixel data, ...).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.support.dicom_files import (  # noqa: F401 - re-exported: the DICOM tests import them from here
    BAD_FILE_KINDS,
    PYDICOM_DATA,
    PYDICOM_DATA_EXTRA,
    bad_files,
    make_bad_files,
    sample_file,
)
from tests.support.services import GcsEmulator, S3Server, free_port, wait_for_port  # noqa: F401 - re-exported


def __getattr__(name: str) -> Any:
    """``from tests.integration.dicom.conftest import s3_server`` (and the other service fixtures) still works;
    they live in tests/support/services.py, and are not attributes here so pytest registers them once."""
    if name in ("gcs_emulator", "gcs_emulator_server", "s3_env", "s3_server"):
        from tests.support import services

        return getattr(services, name)
    raise AttributeError(name)


# --------------------------------------------------------------------------- HTTP file server


@dataclass
class FileServer:
    """Serves ``root``; ``faults[path]`` is a list of actions consumed one per request.

    Actions: an HTTP status (int), ``"slow"`` (stall longer than any test
    timeout before answering), ``"reset"`` (drop the connection), ``"ok"``,
    ``"trickle"`` (headers at once, then the body at one byte per second),
    ``("redirect", url)`` (a 302 to ``url``), ``"dicomweb"`` / ``"dicomweb-series"`` (the file as a WADO-RS
    multipart/related answer of one part / of two; ``accepts`` records the Accept header asked with).
    ``delay`` adds a pause to every request (to make a run slow enough to kill).
    """

    root: Path
    port: int = 0
    faults: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    requests: Counter = field(default_factory=Counter)
    delay: float = 0.0
    slow_seconds: float = 3.0
    accepts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            name = unquote(urlsplit(self.path).path).lstrip("/")
            with server.lock:
                server.requests[name] += 1
                queue = server.faults.get(name)
                action = queue.pop(0) if queue else "ok"
            if server.delay:
                time.sleep(server.delay)
            if action == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if action == "slow":
                time.sleep(server.slow_seconds)
            if isinstance(action, tuple) and action[0] == "redirect":
                self.send_response(302)
                self.send_header("Location", action[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if isinstance(action, int):
                body = f"status {action}".encode()
                self.send_response(action)
                if action == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            path = server.root / name
            if not path.is_file() or ".." in Path(name).parts:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            content_type = "application/dicom"
            if action in ("dicomweb", "dicomweb-series"):  # a WADO-RS retrieve: the instance(s) as multipart
                server.accepts.append(self.headers.get("Accept", ""))
                boundary = "DICOMwebBoundary7f3a"
                part = b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
                data = part * (2 if action == "dicomweb-series" else 1) + b"--" + boundary.encode() + b"--\r\n"
                content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if action == "trickle":
                self.wfile.flush()
                for i in range(len(data)):  # ends when the client hangs up (broken pipe)
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(1.0)
                return
            self.wfile.write(data)

    return Handler


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # injected connection resets end requests abruptly on purpose


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    server = FileServer(root=root)
    httpd = _QuietHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="dicom-test-http", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- reports table


def create_reports_table(
    server: Any, rows: list[tuple[Any, ...]], *, table: str = "reports", fields: tuple[str, ...] = ("report_text",)
) -> None:
    """A reports table: key columns + ``fields`` (text), rows inserted in the given (physical) order."""
    from clinicflow.core.sql import quote_ident, quote_list

    columns = ("study_id", "series_id", "instance_id", "file_location", *fields)
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {quote_ident(table, 'postgres')} ("
                + ", ".join(f"{quote_ident(c, 'postgres')} text" for c in columns)
                + ")"
            )
            placeholders = ", ".join(["%s"] * len(columns))
            cur.executemany(
                f"INSERT INTO {quote_ident(table, 'postgres')} ({quote_list(list(columns), 'postgres')}) "
                f"VALUES ({placeholders})",
                rows,
            )
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def reports_db(make_pg_db: Any) -> Any:
    return make_pg_db("dicom")
