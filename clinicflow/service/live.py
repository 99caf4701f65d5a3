"""Live updates: one PostgreSQL LISTEN on ``etl_update`` relayed to every WebSocket subscriber.

One asyncpg connection per app (not one per browser); it reconnects with the
project's retry policy (:data:`RECONNECT`) when the database goes away. Subscribers get the NOTIFY payloads
({id, status, progress}) as they come; a slow subscriber drops its oldest
messages instead of holding the others up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from clinicflow.core.retry import FOREVER, RetryPolicy, acall_with_retry
from clinicflow.processing.store import CHANNEL

log = logging.getLogger("clinicflow.service")
QUEUE_SIZE = 1000


def _any_error(_exc: BaseException) -> bool:
    return True  # logged by type only (the message may hold the address)


# While the database is away: reconnect after 1, 2, 4, 8, 16 s, then every 30 s.
RECONNECT = RetryPolicy(retries=FOREVER, fixed_delays=(1.0, 2.0, 4.0, 8.0, 16.0, 30.0), retry_on=_any_error)
_ASYNCPG_SSL = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def asyncpg_connect_kwargs(server: Any) -> dict[str, Any]:
    """asyncpg's connection arguments for a PostgresServer block (no password: None; libpq's sslmodes)."""
    return {
        "host": server.host,
        "port": server.port,
        "user": server.username,
        "password": server.password.get_secret_value() or None,
        "database": server.database,
        "ssl": server.sslmode if server.sslmode in _ASYNCPG_SSL else None,
    }


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
        while True:
            conn = await acall_with_retry(
                self._connect, what="live updates: LISTEN connection", policy=RECONNECT, logger=log
            )
            try:
                self.listening.set()
                while not conn.is_closed():
                    await asyncio.sleep(1)
                log.warning("live updates: LISTEN connection lost; reconnecting in %.0fs", RECONNECT.delay(0))
            finally:
                self.listening.clear()
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(RECONNECT.delay(0))

    async def _connect(self) -> Any:
        """One asyncpg connection listening on ``etl_update``."""
        import asyncpg

        conn = await asyncpg.connect(**asyncpg_connect_kwargs(self._database))
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        return conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.publish(json.loads(payload))
        except ValueError:
            log.warning("live updates: a payload that is not JSON was ignored")
