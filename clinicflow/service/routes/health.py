"""``GET /health`` (no token: database, live updates, dispatcher, sandbox) and ``GET /`` (to the page)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from clinicflow.core.dbapi import PgConnection
from clinicflow.processing import sandbox
from clinicflow.service.state import Service

router = APIRouter()


def _select_one(conn: PgConnection) -> None:
    conn.cursor().execute("SELECT 1")


@router.get("/health")
async def health(service: Service) -> dict[str, Any]:
    try:
        await run_in_threadpool(service.db, _select_one)
        database = "ok"
    except Exception as exc:  # noqa: BLE001 - reported by type only
        database = f"error: {type(exc).__name__}"
    dispatcher = service.dispatcher
    # "starting" until the dispatcher can create runs: a job submitted then waits for its start-up.
    dispatching = dispatcher.state() if dispatcher is not None else "run by the serve process"
    status = "ok" if database == "ok" and dispatching != "stopped" else "degraded"
    if status == "ok" and dispatching == "starting":
        status = "starting"
    return {
        "status": status,
        "database": database,
        "live_updates": service.live.listening.is_set(),
        "dispatcher": dispatching,
        "custom_scripts_sandbox": service.sandbox or sandbox.active_mode(),
    }


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/")
