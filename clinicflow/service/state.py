"""What the API's endpoints share, kept on ``app.state.service`` and given to them by ``Depends``.

:func:`clinicflow.service.app.create_app` builds one :class:`ServiceState` per app
(settings, connection pool, bucket, live updates, dispatcher, series cache); its
lifespan opens the Prefect client and records the sandbox mode on it. An endpoint
asks for it with a parameter typed :data:`Service`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.requests import HTTPConnection

from clinicflow.connectors.postgres.pool import ConnectionPool
from clinicflow.processing import store
from clinicflow.service.dispatcher_process import DispatcherProcess
from clinicflow.service.live import LiveUpdates
from clinicflow.service.series_api import ResultSeries
from clinicflow.service.settings import ServiceSettings
from clinicflow.service.submit import GroupCommit, KnownFiles

T = TypeVar("T")


@dataclass
class ServiceState:
    """The app's shared objects. ``prefect`` (one client, one HTTP connection pool for every request) and
    ``sandbox`` are set by the lifespan."""

    settings: ServiceSettings
    pool: ConnectionPool
    writer: Any
    live: LiveUpdates
    workdir: Path
    dispatcher: DispatcherProcess | None
    series: ResultSeries = field(init=False)
    # Data files never change once registered: a request reads its file's row count and columns from here.
    known_files: KnownFiles = field(init=False)
    # The submit path's PENDING rows, written by group commit (opened by the lifespan).
    new_rows: GroupCommit = field(init=False)
    prefect: Any = None
    sandbox: str | None = None

    def __post_init__(self) -> None:
        self.series = ResultSeries(self.db, self.writer, self.workdir)
        self.known_files = KnownFiles(lambda file_id: run_in_threadpool(self.db, store.get_data_file, file_id))
        self.new_rows = GroupCommit(self.settings.database)

    def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` on a pooled connection (call it in a thread)."""
        with self.pool.connection() as conn:
            return fn(conn, *args, **kwargs)


def service_state(connection: HTTPConnection) -> ServiceState:
    """The dependency: the app's :class:`ServiceState` (HTTP requests and WebSockets alike)."""
    state: ServiceState = connection.app.state.service
    return state


Service = Annotated[ServiceState, Depends(service_state)]
