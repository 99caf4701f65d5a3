"""``GET /api/etl/results/{result_id}/series``: the chart's data (see :mod:`clinicflow.service.series_api`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from clinicflow.processing.downsample import DEFAULT_POINTS, MAX_POINTS
from clinicflow.service.auth import AUTH
from clinicflow.service.state import Service

router = APIRouter(dependencies=AUTH)


@router.get("/api/etl/results/{result_id}/series")
async def result_series(
    service: Service,
    result_id: int,
    x: str | None = Query(None, max_length=200, description="x column; 'row' for the row index"),
    x_min: float | None = None,
    x_max: float | None = None,
    points: int = Query(DEFAULT_POINTS, ge=10, le=MAX_POINTS),
) -> dict[str, Any]:
    """The series of a result in [x_min, x_max] at about ``points`` points each (MinMaxLTTB)."""
    if x_min is not None and x_max is not None and not np.isfinite([x_min, x_max]).all():
        raise HTTPException(422, "x_min and x_max must be finite")
    return await run_in_threadpool(service.series.window, result_id, x, x_min, x_max, points)
