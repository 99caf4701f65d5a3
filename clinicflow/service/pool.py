"""A small thread-safe pool of psycopg2 connections for the API's request threads."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any


class ConnectionPool:
    """At most ``size`` connections open; a broken connection is dropped, not returned."""

    def __init__(self, connect: Callable[[], Any], size: int = 10) -> None:
        self._connect = connect
        self._free: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        with self._slots:
            try:
                conn = self._free.get_nowait()
            except queue.Empty:
                conn = self._connect()
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                if conn.closed:
                    raise
                self._free.put(conn)
                raise
            if not conn.closed:
                self._free.put(conn)

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                return
