"""Leases of the rows a task worker is running: a heartbeat thread, and the reaper of lost workers.

A task worker claims a row PENDING -> PROCESSING with its id (``host-pid``)
and a first ``heartbeat_at``; :class:`LeaseKeeper` renews ``heartbeat_at`` of
every row the process is running. A process killed with SIGKILL (or a lost
node) stops renewing; the next reaper pass (in any task worker, and in the
API) ends its rows CRASHED with the reason, so no row stays PROCESSING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from clinicflow.core import settings
from clinicflow.core.dbapi import PgConnection
from clinicflow.processing import store

log = logging.getLogger("clinicflow.processing")
DEFAULT_LEASE_SECONDS = 30.0


def lease_seconds() -> float:
    """How long a row's lease lasts without a heartbeat (``CLINICFLOW_PROCESSING_LEASE_SECONDS``)."""
    return settings.processing_lease_seconds(DEFAULT_LEASE_SECONDS)


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class LeaseKeeper:
    """Renews the lease of the rows this process runs, every ``lease / 5`` seconds, and reaps lost rows."""

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        lease: float | None = None,
        worker: str | None = None,
        on_reaped: Callable[[store.Reaped], None] = lambda _r: None,
    ) -> None:
        self.connect = connect
        self.on_reaped = on_reaped
        self.lease = lease if lease is not None else lease_seconds()
        self.worker = worker or worker_id()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def track(self, result_id: int) -> Iterator[None]:
        with self._lock:
            self._running.add(result_id)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(result_id)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="clinicflow-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.lease)

    def beat(self, conn: PgConnection) -> list[store.Reaped]:
        """One pass: renew this worker's rows, then end other workers' expired rows CRASHED."""
        with self._lock:
            running = sorted(self._running)
        store.renew_leases(conn, running, self.worker)
        return store.reap_lost(conn, self.lease)

    def _loop(self) -> None:
        conn = None
        while not self._stop.wait(self.lease / 5):
            try:
                if conn is None or conn.closed:
                    conn = self.connect()
                for ended in self.beat(conn):
                    log.warning("result %s ended CRASHED: its task worker's lease ran out", ended.id)
                    self.on_reaped(ended)
            except Exception as exc:  # noqa: BLE001 - the next pass tries again with a new connection
                log.warning("lease keeper: %s", type(exc).__name__)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
        if conn is not None:
            conn.close()
