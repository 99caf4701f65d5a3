"""The service's input limits, in process: parameter values, the streamed body limit, token redaction."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from clinicflow.processing.base import InvalidRequest
from clinicflow.processing.processors import validate_request
from clinicflow.service import limits


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ({"a": math.nan}, "parameters.a", "NaN and Infinity"),
        ({"a": [1, {"b": math.inf}]}, "parameters.a.1.b", "NaN and Infinity"),
        ({"a": "x\x00y"}, "parameters.a", "NUL characters"),
        ({"a\x00": 1}, "parameters", "NUL characters are not allowed in keys"),
        ({"a": 1 << 63}, "parameters.a", "out of range"),
    ],
)
def test_values_jsonb_cannot_hold_are_named(value: dict, field: str, reason: str) -> None:
    found = limits.check_json_value(value, "parameters")
    assert found is not None
    assert found[0] == field
    assert reason in found[1]


def test_deep_nesting_and_good_values() -> None:
    deep: dict = {}
    node = deep
    for _ in range(30):
        node["x"] = {}
        node = node["x"]
    assert limits.check_json_value(deep, "parameters") is not None
    assert limits.check_json_value({"a": [1, 2.5, "ok", None, True, {"b": -3}]}, "parameters") is None


@pytest.mark.parametrize(
    ("kind", "parameters", "field"),
    [
        ("rolling_mean", {"window": 3, "chunk_rows": 3_000_000}, "parameters.chunk_rows"),
        ("rolling_mean", {"window": 3, "max_points": 10_000_000}, "parameters.max_points"),
        ("peak_detection", {"chunk_rows": 10**12}, "parameters.chunk_rows"),
        ("peak_detection", {"height": math.nan}, "parameters.height"),
        ("peak_detection", {"prominence": math.inf}, "parameters.prominence"),
        ("data_quality", {"chunk_rows": 10**9}, "parameters.chunk_rows"),
    ],
)
def test_parameters_that_set_memory_are_capped(kind: str, parameters: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        validate_request(kind, parameters)
    assert error.value.field == field


def body_app(limit: int) -> tuple[limits.BodyLimit, dict[str, int]]:
    seen = {"bytes": 0}

    async def upload(request: Request) -> JSONResponse:
        async for block in request.stream():
            seen["bytes"] += len(block)
        return JSONResponse({"read": seen["bytes"]}, status_code=201)

    app = Starlette(
        routes=[
            Route(limits.UPLOAD_PATH, upload, methods=["POST"]),
            Route("/api/etl/process", upload, methods=["POST"]),
        ]
    )
    return limits.BodyLimit(app, upload_bytes=limit), seen


def test_a_streamed_upload_is_cut_at_the_limit() -> None:
    asyncio.run(_streamed_upload())


async def _streamed_upload() -> None:
    app, seen = body_app(1 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):  # 64 MiB offered, no Content-Length
            yield b"x" * (1 << 20)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(limits.UPLOAD_PATH, content=chunks())
        assert response.status_code == 413
        assert "uploads are limited to 1 MiB (CLINICFLOW_PROCESSING_MAX_UPLOAD_MB)" in response.text
        assert seen["bytes"] <= 1 << 20  # the app never saw more than the limit
        declared = await client.post(limits.UPLOAD_PATH, content=b"x" * 10, headers={"content-length": str(2 << 20)})
        assert declared.status_code == 413
        assert seen["bytes"] <= 1 << 20
        small = await client.post(limits.UPLOAD_PATH, content=b"x" * 1000)
        assert small.status_code == 201
        other = await client.post("/api/etl/process", content=b"x" * (limits.MAX_BODY_BYTES + 1))
        assert other.status_code == 413
        assert "request bodies are limited to 1 MiB" in other.text


def test_tokens_are_redacted_from_access_log_lines() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s" %s',
        ("127.0.0.1:1", "GET", "/ws?token=fake-sentinel-not-a-credential-18&x=1", "403"),
        None,
    )
    limits.RedactTokens().filter(record)
    assert "fake-sentinel-not-a-credential-18" not in record.getMessage()
    assert "token=***&x=1" in record.getMessage()


def test_subprotocol_token() -> None:
    assert limits.ws_subprotocol_token(["clinicflow.v1", "clinicflow.token.abc"]) == "abc"
    assert limits.ws_subprotocol_token(["other"]) is None
