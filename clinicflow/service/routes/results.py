"""Results: ``/api/etl/results`` (list, read, export JSON/CSV, delete: cancels the run still in flight)."""

from __future__ import annotations

import contextlib
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from clinicflow.processing import store
from clinicflow.service.auth import AUTH
from clinicflow.service.dispatch import cancel_task_run
from clinicflow.service.routes.params import Offset, ResultId
from clinicflow.service.state import Service, ServiceState

router = APIRouter(dependencies=AUTH)

Status = Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED"]


# The names keep the operation ids of the OpenAPI document (store has list_results, get_result too).
@router.get("/api/etl/results", name="list_results")
async def list_result_rows(
    service: Service,
    status: Status | None = None,
    processing_type: str | None = Query(None, alias="type", max_length=100, pattern=r"^[A-Za-z0-9_]*$"),
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
) -> dict[str, Any]:
    rows, total = await run_in_threadpool(
        service.db, store.list_results, status=status, processing_type=processing_type, limit=limit, offset=offset
    )
    return {"items": rows, "total": total, "limit": limit, "offset": offset}


async def one_result(service: ServiceState, result_id: int) -> dict[str, Any]:
    row: dict[str, Any] | None = await run_in_threadpool(service.db, store.get_result, result_id)
    if row is None:
        raise HTTPException(404, f"no result {result_id}")
    return row


@router.get("/api/etl/results/{result_id}", name="get_result")
async def read_result(service: Service, result_id: ResultId) -> dict[str, Any]:
    return await one_result(service, result_id)


@router.get("/api/etl/results/{result_id}/export")
async def export(service: Service, result_id: ResultId, format: Literal["json", "csv"] = "json") -> Any:
    row = await one_result(service, result_id)
    disposition = {"Content-Disposition": f'attachment; filename="result-{result_id}.{format}"'}
    # Full resolution, streamed: a series result's export holds every row of the data file (the row keeps
    # an overview, the chart its own downsampled points).
    if format == "json":
        json_chunks = await run_in_threadpool(service.series.json, row)
        return StreamingResponse(json_chunks, media_type="application/json", headers=disposition)
    csv_chunks = await run_in_threadpool(service.series.csv, row)
    return StreamingResponse(csv_chunks, media_type="text/csv; charset=utf-8", headers=disposition)


@router.delete("/api/etl/results/{result_id}")
async def delete(service: Service, result_id: ResultId) -> dict[str, Any]:
    row = await run_in_threadpool(service.db, store.get_result, result_id, with_data=False)
    if row is None:
        raise HTTPException(404, f"no result {result_id}")
    cancelled = cancelled_task = None
    if row["status"] in store.ACTIVE and row["flow_run_id"]:
        cancelled = await _cancel_run(service.prefect, row["flow_run_id"])
    if row["status"] in store.ACTIVE and row.get("task_run_id"):
        with contextlib.suppress(Exception):  # the runner stops anyway (next progress write, script row check)
            cancelled_task = await cancel_task_run(service.prefect, row["task_run_id"])
    await run_in_threadpool(service.db, store.delete_result, result_id)
    return {"id": result_id, "deleted": True, "cancelled_flow_run": cancelled, "cancelled_task_run": cancelled_task}


async def _cancel_run(client: Any, flow_run_id: str) -> str | None:
    """Cancel a flow run still in flight: Cancelled before it started, else Cancelling (the worker stops it)."""
    from prefect.client.schemas.objects import State
    from prefect.states import Cancelled, Cancelling

    flow_run = await client.read_flow_run(UUID(flow_run_id))
    state = flow_run.state
    if state is None or state.is_final():
        return None
    new_state: State[Any] = (
        Cancelled(message="result deleted")
        if (state.is_scheduled() or state.is_pending())
        else Cancelling(message="result deleted")
    )
    await client.set_flow_run_state(UUID(flow_run_id), new_state, force=True)
    return flow_run_id
