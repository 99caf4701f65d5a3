"""psycopg2 connections a long-running process keeps between processing runs (a task worker's runs).

:func:`clinicflow.processing.runner.process_result` opens a connection per run and closes it at the end;
in a task worker, :meth:`KeptConnections.connect` hands it one kept from an earlier run instead (its
``close()`` puts it back), so a small job does not pay for a new PostgreSQL backend each time. A
connection is put back only when it is open and idle (its transaction rolled back), and is not handed out
again after ``max_idle_seconds`` unused (a server restart or a dropped connection then costs no run).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

# psycopg2.extensions.TRANSACTION_STATUS_IDLE (not imported: the library keeps psycopg2 behind core.dbapi).
_IDLE = 0
MAX_IDLE_SECONDS = 60.0


class KeptConnections:
    def __init__(
        self, connect: Callable[[], Any], *, keep: int = 4, max_idle_seconds: float = MAX_IDLE_SECONDS
    ) -> None:
        self._connect = connect
        self._keep = keep
        self._max_idle = max_idle_seconds
        self._free: list[tuple[Any, float]] = []
        self._lock = threading.Lock()

    def connect(self) -> Any:
        """A connection (kept or new) whose ``close()`` returns it here."""
        now = time.monotonic()
        with self._lock:
            while self._free:
                conn, since = self._free.pop()
                if now - since <= self._max_idle and not conn.closed:
                    return _Kept(conn, self._put_back)
                with contextlib.suppress(Exception):
                    conn.close()
        return _Kept(self._connect(), self._put_back)

    def _put_back(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            if not conn.closed:
                conn.rollback()
        reusable = not conn.closed and conn.get_transaction_status() == _IDLE
        with self._lock:
            if reusable and len(self._free) < self._keep:
                self._free.append((conn, time.monotonic()))
                return
        with contextlib.suppress(Exception):
            conn.close()

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for conn, _ in free:
            with contextlib.suppress(Exception):
                conn.close()


class _Kept:
    """The connection, but ``close()`` hands it back (once); everything else is the connection's own."""

    def __init__(self, conn: Any, put_back: Callable[[Any], None]) -> None:
        self._conn: Any = conn
        self._put_back = put_back

    @property
    def closed(self) -> bool:
        return self._conn is None or bool(self._conn.closed)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._put_back(conn)

    def __getattr__(self, name: str) -> Any:
        if self._conn is None:
            raise AttributeError(f"{name}: the connection was closed")
        return getattr(self._conn, name)
