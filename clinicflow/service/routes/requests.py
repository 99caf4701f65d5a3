"""Processing requests: ``GET /api/etl/processors`` and ``POST /api/etl/process``.

A request is validated against the processor registry (422 naming the field),
inserted PENDING and answered at once; the dispatcher
(:mod:`clinicflow.service.dispatch`) sends it on.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from fastapi import APIRouter
from pydantic import BaseModel, Field

from clinicflow.processing.base import InvalidRequest
from clinicflow.processing.processors import REGISTRY, validate_request
from clinicflow.processing.store_pending import NewRow
from clinicflow.service import limits
from clinicflow.service.auth import AUTH
from clinicflow.service.dispatch import as_deployment_run
from clinicflow.service.routes.params import invalid
from clinicflow.service.state import Service

router = APIRouter(dependencies=AUTH)


class ProcessRequest(BaseModel):
    data_file_id: int = Field(ge=1, le=limits.MAX_BIGINT)
    processing_type: str = Field(max_length=100)
    parameters: dict[str, Any] = Field(default_factory=dict)


@router.get("/api/etl/processors")
async def processors() -> dict[str, Any]:
    return {
        name: {"description": p.description, "parameters": p.params_model.model_json_schema()}
        for name, p in REGISTRY.items()
    }


@router.post("/api/etl/process", status_code=202)
async def process(service: Service, request: ProcessRequest) -> dict[str, Any]:
    """Validate, write the PENDING row (the outbox) and answer; the dispatcher creates the run."""
    data_file = await service.known_files.get(request.data_file_id)
    if data_file is None:
        raise invalid("data_file_id", f"no data file {request.data_file_id}")
    if bad := limits.check_json_value(request.parameters, "parameters"):
        raise invalid(*bad)
    try:
        params = validate_request(
            request.processing_type,
            request.parameters,
            scripts_dir=service.settings.scripts_dir,
            file_columns=[c["name"] for c in data_file["columns"]],
        )
    except InvalidRequest as exc:
        raise invalid(exc.field, exc.message) from None
    as_deployment = as_deployment_run(int(data_file["row_count"]))
    # The dispatcher process hears of the row from its NOTIFY (committed with it).
    result_id = await service.new_rows.insert(
        NewRow(
            request.data_file_id,
            request.processing_type,
            params.model_dump(mode="json"),
            None if as_deployment else str(uuid4()),
        )
    )
    return {"id": result_id, "status": "PENDING", "runs_as": "deployment" if as_deployment else "task"}
