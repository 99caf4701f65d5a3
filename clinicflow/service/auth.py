"""The API token: ``Authorization: Bearer <token>`` on every endpoint except ``/health`` and the static
page; on the WebSocket, the token in its first message or subprotocol, never the URL.

Routers take :data:`AUTH` as their dependencies; the WebSocket endpoint calls :func:`ws_login`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from typing import Annotated, Any

from fastapi import Depends, HTTPException, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.websockets import WebSocketDisconnect

from clinicflow.service import limits
from clinicflow.service.state import Service

bearer = HTTPBearer(auto_error=False)


def token_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())  # type: ignore[union-attr]


async def require_token(
    service: Service, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    if credentials is None or not token_ok(service.settings.token, credentials.credentials):
        raise HTTPException(
            401,
            "a valid API token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


AUTH: list[Any] = [Depends(require_token)]


async def ws_login(websocket: WebSocket, token: str) -> bool:
    """The token as a subprotocol (checked before the handshake) or as the first message; never the URL."""
    if "token" in websocket.query_params:
        await websocket.close(
            code=1008, reason="send the token in the first message or the subprotocol, not in the URL"
        )
        return False
    offered = limits.ws_subprotocol_token(websocket.scope.get("subprotocols") or [])
    if offered is not None:
        if not token_ok(token, offered):
            await websocket.close(code=1008, reason="a valid token is required")
            return False
        await websocket.accept(subprotocol=limits.WS_SUBPROTOCOL)
        return True
    await websocket.accept()
    try:
        first = await asyncio.wait_for(websocket.receive_text(), limits.WS_AUTH_SECONDS)
        given = json.loads(first).get("token") if first.startswith("{") else None
    except (TimeoutError, ValueError, AttributeError, KeyError, WebSocketDisconnect, RuntimeError):
        given = None
    if not isinstance(given, str) or not token_ok(token, given):
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1008, reason='a valid token is required: {"type": "auth", "token": ...}')
        return False
    return True
