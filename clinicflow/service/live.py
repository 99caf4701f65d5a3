"""Live updates: one PostgreSQL LISTEN on ``etl_update`` relayed to every WebSocket subscriber.

One asyncpg connection per app (not one per browser); it reconnects with a
backoff when the database goes away. Subscribers get the NOTIFY payloads
({id, status, progress}) as they come; a slow subscriber drops its oldest
messages instead of holding the others up.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from clinicflow.processing.store import CHANNEL

log = logging.getLogger("clinicflow.service")
QUEUE_SIZE = 1000
_ASYNCPG_SSL = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


class LiveUpdates:
    def __init__(self, database: Any) -> None:
        self._database = database
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        subscriber: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(subscriber)

    def publish(self, message: dict[str, Any]) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.full():
                subscriber.get_nowait()
            subscriber.put_nowait(message)

    async def _listen_forever(self) -> None:
        import asyncpg

        server = self._database
        delay = 1.0
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(host=server.host, port=server.port, user=server.username,
                                             password=server.password.get_secret_value() or None,
                                             database=server.database,
                                             ssl=server.sslmode if server.sslmode in _ASYNCPG_SSL else None)
                await conn.add_listener(CHANNEL, self._on_notify)
                self.listening.set()
                delay = 1.0
                while not conn.is_closed():
                    await asyncio.sleep(1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged by type only (the message may hold the address)
                log.warning("live updates: LISTEN connection lost (%s); reconnecting in %.0fs",
                            type(exc).__name__, delay)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.publish(json.loads(payload))
        except ValueError:
            log.warning("live updates: a payload that is not JSON was ignored")
