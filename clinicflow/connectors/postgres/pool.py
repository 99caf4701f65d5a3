"""psycopg2 connections kept between uses: the one pool of the API's request threads and of the task workers.

- ``with pool.connection() as conn``: a connection for the block (the API's request threads, the dispatcher).
- ``pool.connect()``: a connection whose ``close()`` hands it back (once), for code that opens and closes
  its own connection from a ``connect`` callable (:func:`clinicflow.processing.runner.process_result` in a
  task worker), so a small job does not pay for a new PostgreSQL backend each time.

``size`` bounds the connections lent at once (a caller waits for a free one); None: unbounded. A returned
connection is rolled back and kept only while it is open and idle, at most ``keep`` of them; one unused for
``max_idle_seconds`` is closed rather than lent (a server restart or a dropped connection then costs no use).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

# psycopg2.extensions.TRANSACTION_STATUS_IDLE (not imported: the library keeps psycopg2 behind core.dbapi).
_IDLE = 0
MAX_IDLE_SECONDS = 60.0
# Idle connections kept by an unbounded pool when ``keep`` is not given.
KEEP = 4


class ConnectionPool:
    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        size: int | None = None,
        keep: int | None = None,
        max_idle_seconds: float = MAX_IDLE_SECONDS,
    ) -> None:
        if size is not None and size < 1:
            raise ValueError(f"pool size must be at least 1, not {size}")
        self._connect = connect
        self._slots = None if size is None else threading.BoundedSemaphore(size)
        self._keep = keep if keep is not None else (size if size is not None else KEEP)
        self._max_idle = max_idle_seconds
        self._free: list[tuple[Any, float]] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection for the block, handed back (rolled back) at its end, whatever happens."""
        conn = self._take()
        try:
            yield conn
        finally:
            self._give_back(conn)

    def connect(self) -> Any:
        """A connection (kept or new) whose ``close()`` hands it back here."""
        return _Lent(self._take(), self._give_back)

    def close(self) -> None:
        """Close the kept connections (those lent are closed or kept when they come back)."""
        with self._lock:
            free, self._free = self._free, []
        _close_all(conn for conn, _ in free)

    def _take(self) -> Any:
        if self._slots is not None:
            self._slots.acquire()
        try:
            now = time.monotonic()
            stale, fresh = [], []
            with self._lock:
                for kept, since in self._free:
                    if now - since > self._max_idle or kept.closed:
                        stale.append(kept)
                    else:
                        fresh.append((kept, since))
                self._free = fresh
                conn = self._free.pop()[0] if self._free else None
            _close_all(stale)
            return conn if conn is not None else self._connect()
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise

    def _give_back(self, conn: Any) -> None:
        try:
            reusable = False
            with contextlib.suppress(Exception):  # a broken connection cannot roll back: it is dropped
                if not conn.closed:
                    conn.rollback()
                reusable = not conn.closed and conn.get_transaction_status() == _IDLE
            with self._lock:
                if reusable and len(self._free) < self._keep:
                    self._free.append((conn, time.monotonic()))
                    return
            _close_all([conn])
        finally:
            if self._slots is not None:
                self._slots.release()


def _close_all(conns: Any) -> None:
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()


class _Lent:
    """The connection, but ``close()`` hands it back (once); everything else is the connection's own."""

    def __init__(self, conn: Any, give_back: Callable[[Any], None]) -> None:
        self._conn: Any = conn
        self._give_back = give_back

    @property
    def closed(self) -> bool:
        return self._conn is None or bool(self._conn.closed)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._give_back(conn)

    def __getattr__(self, name: str) -> Any:
        if self._conn is None:
            raise AttributeError(f"{name}: the connection was closed")
        return getattr(self._conn, name)
