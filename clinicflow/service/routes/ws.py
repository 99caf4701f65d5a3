"""The WebSocket ``/ws``: after the token (first message or subprotocol), every ``etl_update`` NOTIFY
as ``{"type": "etl_update", id, status, progress}``."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from clinicflow.service.auth import ws_login
from clinicflow.service.state import Service

router = APIRouter()


@router.websocket("/ws")
async def updates(websocket: WebSocket, service: Service) -> None:
    if not await ws_login(websocket, service.settings.token):
        return
    subscriber = service.live.subscribe()
    try:
        while True:
            message = await subscriber.get()
            await websocket.send_json({"type": "etl_update", **message})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        service.live.unsubscribe(subscriber)
