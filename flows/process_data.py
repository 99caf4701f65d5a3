"""Flow ``process_data(result_id)``: one row of ``processing.results`` processed, its outcome stored on the row.

Wiring only (logic in :mod:`clinicflow.processing.runner`). The state hooks
keep the row from staying PROCESSING when the run ends any other way: a
failure outside the processor marks it FAILED, a crash (the process killed,
the pod gone; Prefect's worker runs ``on_crashed`` in a fresh process) marks
it CRASHED, a cancellation CANCELLED. A row that already ended is never changed.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run as current_flow_run

from clinicflow.connectors.connections import connected
from clinicflow.core.logs import get_logger
from clinicflow.processing import store
from clinicflow.processing.custom import scripts_dir_from_env
from clinicflow.service.settings import processing_bucket, processing_database
from tasks.processing import process_result_task

_HOOK_STATUS = {"failure": "FAILED", "crashed": "CRASHED", "cancellation": "CANCELLED"}


def _end_row(kind: str, flow_run: Any, state: Any) -> None:
    result_id = (flow_run.parameters or {}).get("result_id")
    if result_id is None:
        return
    message = f"flow run {flow_run.id} {state.type.value.lower()}: {state.message or state.name}"
    with connected(processing_database()) as conn:
        ended = store.mark_ended(conn, int(result_id), _HOOK_STATUS[kind], message)
    if ended is not None:
        get_logger(__name__).warning("result %s marked %s (%s)", result_id, ended.status, kind)


def _on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    _end_row("failure", flow_run, state)


def _on_crashed(flow: Any, flow_run: Any, state: Any) -> None:
    _end_row("crashed", flow_run, state)


def _on_cancellation(flow: Any, flow_run: Any, state: Any) -> None:
    _end_row("cancellation", flow_run, state)


@flow(name="process-data", on_failure=[_on_failure], on_crashed=[_on_crashed], on_cancellation=[_on_cancellation])
def process_data(result_id: int) -> dict[str, Any]:
    """Process one results row: PROCESSING -> download -> processor -> COMPLETED or FAILED."""
    flow_run_id = current_flow_run.get_id()
    return process_result_task(
        processing_database(),
        processing_bucket(),
        result_id,
        str(flow_run_id) if flow_run_id else None,
        scripts_dir_from_env(),
    )
