"""Table progress of a run, for whoever watches it in this process (the terminal of `clinicflow nightly`).

The tier runner reports each tier's start and each table's end; a watcher
installed with :func:`watching` receives them (none by default: nothing is
printed inside a worker or a pod, where Prefect's logs and artifacts are the
record). A watcher that raises never fails the run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol


class ProgressWatcher(Protocol):
    def tier_started(self, tier: int, tables: int) -> None: ...

    def table_done(self, tier: int, table: str, status: str, rows_copied: int | None, rows_loaded: int) -> None: ...


_watchers: list[ProgressWatcher] = []
_lock = threading.Lock()


@contextlib.contextmanager
def watching(watcher: ProgressWatcher) -> Iterator[ProgressWatcher]:
    with _lock:
        _watchers.append(watcher)
    try:
        yield watcher
    finally:
        with _lock:
            _watchers.remove(watcher)


def tier_started(tier: int, tables: int) -> None:
    for watcher in list(_watchers):
        with contextlib.suppress(Exception):
            watcher.tier_started(tier, tables)


def table_done(tier: int, table: str, status: str, rows_copied: int | None, rows_loaded: int) -> None:
    for watcher in list(_watchers):
        with contextlib.suppress(Exception):
            watcher.table_done(tier, table, status, rows_copied, rows_loaded)
