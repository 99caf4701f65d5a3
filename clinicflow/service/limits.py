"""The service's input limits: request body sizes (checked while the body streams in), values a
database column or a JSON document cannot hold, the WebSocket login, tokens kept out of the logs.

- ``CLINICFLOW_PROCESSING_MAX_UPLOAD_MB`` (default 512): largest data file upload, a 413 naming it;
  any other request body: 1 MiB. A ``Content-Length`` over the limit is refused before a byte is read;
  a chunked body is counted as it arrives and cut at the limit (nothing is spooled past it).
- parameters: no NaN/Infinity, no NUL character, at most ``MAX_PARAMETER_DEPTH`` levels (422 naming the path).
- ``/ws``: the token in the first message ``{"type": "auth", "token": ...}`` or offered as the
  subprotocols ``clinicflow.v1, clinicflow.token.<token>`` (answered ``clinicflow.v1``); never in the URL.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from clinicflow.processing.datafiles import max_upload_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_PATH = "/api/etl/files"
MAX_BODY_BYTES = 1 << 20
# PostgreSQL bigint: ids and offsets above it are a 422, not a database error.
MAX_BIGINT = (1 << 63) - 1
MAX_PARAMETER_DEPTH = 20
WS_SUBPROTOCOL = "clinicflow.v1"
WS_TOKEN_PREFIX = "clinicflow.token."
WS_AUTH_SECONDS = 10.0
_TOKEN_IN_URL = re.compile(r"(?i)([?&](?:token|access_token|api_key)=)[^&\s\"]*")


def describe_bytes(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 and size % (1 << 20) == 0 else f"{size} bytes"


class BodyLimit:
    """ASGI middleware: request bodies over their limit end as 413 naming it, counted as they stream in."""

    def __init__(self, app: ASGIApp, upload_bytes: int | None = None, other_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.upload_bytes = upload_bytes
        self.other_bytes = other_bytes

    def limit_for(self, scope: Scope) -> tuple[int, str]:
        if scope["path"].rstrip("/") == UPLOAD_PATH:
            limit = self.upload_bytes if self.upload_bytes is not None else max_upload_bytes()
            return limit, f"uploads are limited to {describe_bytes(limit)} (CLINICFLOW_PROCESSING_MAX_UPLOAD_MB)"
        return self.other_bytes, f"request bodies are limited to {describe_bytes(self.other_bytes)}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, message = self.limit_for(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, message)
            return
        state = {"seen": 0, "over": False, "started": False}

        async def counted_receive() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            received = await receive()
            if received["type"] == "http.request":
                state["seen"] += len(received.get("body", b""))
                if state["seen"] > limit:
                    state["over"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _too_large(send, message)
                    return {"type": "http.disconnect"}
            return received

        async def guarded_send(sent: Message) -> None:
            if state["over"]:
                return  # the 413 went out; what the app says after the cut is dropped
            if sent["type"] == "http.response.start":
                state["started"] = True
            await send(sent)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise  # a real error; a cut body only makes the app's parser complain


async def _too_large(send: Send, message: str) -> None:
    body = json.dumps({"detail": [{"loc": ["body"], "msg": message, "type": "too_large"}]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_json_value(value: Any, field: str, depth: int = 0) -> tuple[str, str] | None:
    """(field path, reason) of the first value PostgreSQL's jsonb or JSON cannot hold; None when all fit."""
    if depth > MAX_PARAMETER_DEPTH:
        return field, f"nested deeper than {MAX_PARAMETER_DEPTH} levels"
    if isinstance(value, float) and not math.isfinite(value):
        return field, "NaN and Infinity are not allowed"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_BIGINT:
        return field, f"integer out of range (at most {MAX_BIGINT})"
    if isinstance(value, str) and "\x00" in value:
        return field, "NUL characters are not allowed"
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                return field, "NUL characters are not allowed in keys"
            found = check_json_value(item, f"{field}.{key}", depth + 1)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = check_json_value(item, f"{field}.{index}", depth + 1)
            if found:
                return found
    return None


def ws_subprotocol_token(protocols: list[str]) -> str | None:
    """The token offered as a ``clinicflow.token.<token>`` subprotocol, if any."""
    for protocol in protocols:
        if protocol.startswith(WS_TOKEN_PREFIX):
            return protocol[len(WS_TOKEN_PREFIX) :]
    return None


def redact_token(text: str) -> str:
    return _TOKEN_IN_URL.sub(r"\1***", text)


class RedactTokens(logging.Filter):
    """Access/error log lines never carry a ``token=`` query value (a client may still put one in a URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_token(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_token(record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
