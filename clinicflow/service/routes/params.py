"""Parameter types and the 422 shape the routers share."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query
from fastapi import Path as PathParam

from clinicflow.service import limits

# Above PostgreSQL's bigint a value is a 422 naming it, not a database error.
Offset = Annotated[int, Query(ge=0, le=limits.MAX_BIGINT)]
ResultId = Annotated[int, PathParam(ge=1, le=limits.MAX_BIGINT)]


def invalid(field: str, message: str) -> HTTPException:
    """422 in FastAPI's own shape: the location names the request field."""
    return HTTPException(422, [{"loc": ["body", *field.split(".")], "msg": message, "type": "value_error"}])
