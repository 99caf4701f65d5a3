"""HTTP attempts with an absolute deadline, for the DICOM downloader's httpx client.

A read timeout alone resets on every byte, so a server trickling one byte a second would never time out.
Within :func:`attempt_deadline`, every socket operation (connect, every read, every write) of a client
given :func:`use_deadline_backend` has its timeout cut to the time left. Reads wait in short steps so that a
stop request (SIGTERM, see :mod:`clinicflow.core.cancel`) ends a download within a fraction of a second.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from clinicflow.core import cancel

# A blocked read wakes this often to see whether the run was asked to stop.
STOP_POLL_SECONDS = 0.25

_attempt = threading.local()  # .deadline: time.monotonic() by which this thread's HTTP attempt must end


def _time_left(timeout: float | None) -> float | None:
    """``timeout`` cut to this thread's attempt deadline; raises a timeout when none is left."""
    import httpcore

    deadline = getattr(_attempt, "deadline", None)
    if deadline is None:
        return timeout
    left: float = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("download deadline reached")
    return left if timeout is None else min(timeout, left)


def _deadline_backend() -> Any:
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            until = None if timeout is None else time.monotonic() + timeout
            while True:
                cancel.check()
                left = _time_left(None if until is None else max(0.0, until - time.monotonic()))
                if left is not None and left <= 0:
                    raise httpcore.ReadTimeout("read timed out")
                try:
                    data: bytes = self._stream.read(
                        max_bytes, STOP_POLL_SECONDS if left is None else min(left, STOP_POLL_SECONDS)
                    )
                    return data
                except httpcore.ReadTimeout:
                    continue  # a timed-out recv consumed nothing: the deadlines are checked again above

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            cancel.check()
            self._stream.write(buffer, _time_left(timeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
            return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _time_left(timeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self._backend = httpcore.SyncBackend()

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> Any:
            cancel.check()
            return DeadlineStream(
                self._backend.connect_tcp(host, port, _time_left(timeout), local_address, socket_options)
            )

        def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
            return DeadlineStream(self._backend.connect_unix_socket(path, _time_left(timeout), socket_options))

        def sleep(self, seconds: float) -> None:
            self._backend.sleep(seconds)

    return DeadlineBackend()


@contextlib.contextmanager
def attempt_deadline(seconds: float) -> Iterator[None]:
    """This thread's HTTP operations must end within ``seconds`` from now."""
    _attempt.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _attempt.deadline = None


def use_deadline_backend(client: Any) -> None:
    """Every connection pool of the httpx ``client`` (proxies too) gets the deadline backend.

    httpx has no public hook for the network backend.
    """
    backend = _deadline_backend()
    for transport in [client._transport, *client._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        if pool is not None:
            pool._network_backend = backend
