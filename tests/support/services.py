"""Session-wide service fixtures, defined once for the whole suite (a pytest plugin of tests/conftest.py).

- ``s3_server``: moto's threaded S3 server on a free port (``s3_env`` points boto3 at it);
- ``gcs_emulator_server``: gcp-storage-emulator as a subprocess on a free port (``gcs_emulator`` sets
  STORAGE_EMULATOR_HOST for one test).

Each server starts at most once per pytest process, even when a conftest or test module imports a
fixture (which registers another copy of it): the copies share the process's one server. Tests make
their own uniquely named buckets (``new_bucket``), so the xdist workers' servers never collide either.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
_RUNNING: dict[str, Any] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def _once(key: str, config: pytest.Config, start: Callable[[], tuple[T, Callable[[], None]]]) -> T:
    """The process's one instance of ``key``, started on first use and stopped when pytest ends."""
    if key not in _RUNNING:
        value, stop = start()
        _RUNNING[key] = value

        def cleanup() -> None:
            _RUNNING.pop(key, None)
            stop()

        config.add_cleanup(cleanup)
    return _RUNNING[key]


# --------------------------------------------------------------------------- GCS emulator


@dataclass
class GcsEmulator:
    host: str  # http://127.0.0.1:PORT

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            credentials=AnonymousCredentials(), project="test", client_options={"api_endpoint": self.host}
        )

    def new_bucket(self) -> str:
        name = f"cf-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, Any]:
        """name → blob (with generation, md5_hash, size)."""
        return {b.name: b for b in self.client().list_blobs(bucket, prefix=prefix or None)}


def _start_gcs() -> tuple[GcsEmulator, Callable[[], None]]:
    port = free_port()
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    proc = subprocess.Popen(
        [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    try:
        wait_for_port(port)
    except BaseException:
        stop()
        raise
    return GcsEmulator(f"http://127.0.0.1:{port}"), stop


@pytest.fixture(scope="session")
def gcs_emulator_server(request: pytest.FixtureRequest) -> GcsEmulator:
    return _once("gcs", request.config, _start_gcs)


@pytest.fixture
def gcs_emulator(gcs_emulator_server: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> GcsEmulator:
    """The emulator, with ``STORAGE_EMULATOR_HOST`` set for this test only."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator_server.host)
    return gcs_emulator_server


# --------------------------------------------------------------------------- S3 (moto server)


@dataclass
class S3Server:
    endpoint: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def new_bucket(self) -> str:
        name = f"cf-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def _start_s3() -> tuple[S3Server, Callable[[], None]]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for_port(port)
    except BaseException:
        server.stop()
        raise
    return S3Server(f"http://127.0.0.1:{port}"), server.stop


@pytest.fixture(scope="session")
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    return _once("s3", request.config, _start_s3)


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Standard AWS variables pointing boto3 at the moto server (for s3:// downloads)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_server
