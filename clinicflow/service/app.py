"""The data-processing API (FastAPI): data files, processing requests, results, live updates, results page.

``create_app(settings)`` builds the app; ``clinicflow serve`` runs it with
uvicorn. Every endpoint except ``/health`` and the static results page
requires ``Authorization: Bearer <token>`` (the WebSocket: the token in its first message or
subprotocol, never the URL; :mod:`clinicflow.service.auth`; limits and bad values:
:mod:`clinicflow.service.limits`). The endpoints are routers in :mod:`clinicflow.service.routes`;
what they share (settings, pool, live updates, dispatcher) is a
:class:`~clinicflow.service.state.ServiceState` on ``app.state.service``, given to them by ``Depends``.
A processing request is validated against the processor registry (422
naming the field), inserted PENDING and answered at once; the dispatcher
(:mod:`clinicflow.service.dispatch`, a child process of the API) then sends it
to the task workers as a background task run (or, for a huge file, as a
``process-data`` deployment run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from clinicflow.connectors.objectstore.clients import store_for_block
from clinicflow.connectors.postgres.pool import ConnectionPool
from clinicflow.core.heap import freeze_start_up_objects
from clinicflow.processing import sandbox, store
from clinicflow.service import limits
from clinicflow.service.dispatcher_process import DispatcherProcess
from clinicflow.service.live import LiveUpdates
from clinicflow.service.routes import files, health, requests, results, series, ws
from clinicflow.service.settings import ServiceSettings
from clinicflow.service.state import ServiceState

STATIC = Path(__file__).parent / "static"
# The reconciler looks at active rows that have not moved for this long, this often.
RECONCILE_AFTER_SECONDS = 120.0
RECONCILE_EVERY_SECONDS = 60.0


def create_app(settings: ServiceSettings, *, pool_size: int = 10, dispatch: bool = True) -> FastAPI:
    """The app. ``dispatch``: it starts (and stops) the dispatcher process itself; False when the process
    that started several API processes runs the one dispatcher (:mod:`clinicflow.service.workers`)."""
    app = FastAPI(title="clinicflow data processing", lifespan=lifespan)
    app.state.service = ServiceState(
        settings=settings,
        pool=ConnectionPool(settings.database.connect, size=pool_size),
        writer=store_for_block(settings.bucket),
        live=LiveUpdates(settings.database),
        workdir=Path(tempfile.mkdtemp(prefix="clinicflow-serve-")),
        dispatcher=DispatcherProcess() if dispatch else None,
    )
    app.add_middleware(limits.BodyLimit)
    limits.install_log_redaction()
    app.include_router(health.router)
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")
    for module in (series, requests, files, results, ws):
        app.include_router(module.router)
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Tables, live updates, the Prefect client, the reconciler and (``dispatch``) the dispatcher."""
    service: ServiceState = app.state.service

    def prepare() -> None:
        with service.pool.connection() as conn:
            store.ensure_tables(conn)

    await run_in_threadpool(prepare)
    await service.new_rows.start()
    service.sandbox = sandbox.log_mode()
    service.live.start()
    from prefect.client.orchestration import get_client

    try:
        # One Prefect client (one HTTP connection pool) for every request.
        async with get_client() as client:
            service.prefect = client
            reconciler = asyncio.create_task(_reconcile_forever(client, service.pool))
            if service.dispatcher is not None:
                service.dispatcher.start()
            freeze_start_up_objects()
            try:
                yield
            finally:
                reconciler.cancel()
                if service.dispatcher is not None:
                    await asyncio.to_thread(service.dispatcher.stop)
    finally:
        await service.live.stop()
        await service.new_rows.close()
        service.pool.close()
        shutil.rmtree(service.workdir, ignore_errors=True)


async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _reconcile_forever(client: Any, pool: ConnectionPool) -> None:
    """Every minute: rows still active whose flow run is over get ended (see store.reconcile_ended_runs)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    log = logging.getLogger("clinicflow.service")

    def stale() -> dict[int, str]:
        with pool.connection() as conn:
            return store.stale_active_runs(conn, RECONCILE_AFTER_SECONDS)

    def reconcile(states: dict[int, str]) -> list[store.Transition]:
        with pool.connection() as conn:
            return store.reconcile_ended_runs(conn, states)

    while True:
        await asyncio.sleep(RECONCILE_EVERY_SECONDS)
        try:
            rows = await run_in_threadpool(stale)
            if not rows:
                continue
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(f) for f in rows.values()])),
                limit=len(rows),
            )
            by_run = {str(run.id): run.state_type.value for run in runs if run.state_type is not None}
            ended = await run_in_threadpool(reconcile, {i: by_run[f] for i, f in rows.items() if f in by_run})
            for transition in ended:
                log.warning("result %s ended %s by the reconciler", transition.id, transition.status)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("reconciler: %s: %s", type(exc).__name__, exc)
