"""The submit path's write: the PENDING rows of concurrent requests committed together (group commit).

A request's answer (202) waits until its row is committed: nothing is answered that a crash could lose.
Rows that arrive while a write is in flight wait for the next one, which writes all of them in one
``INSERT ... SELECT FROM unnest(...)`` with their NOTIFYs, one round trip and one commit
(:class:`GroupCommit`; the statement is :mod:`clinicflow.processing.store_pending`'s, the one writer of
PENDING rows). On an idle service a row is written at once, alone; under a burst of 200 requests
the API makes a handful of writes instead of 200 threadpool hops of three round trips each.

Profiled (bench/results/processing-history.md, 2026-12-04, h26): with a threadpool hop to psycopg2 per
request, a burst queued for each API process's ten pool connections (half of the busy threads' samples
waited for a slot, the rest were in the INSERT, NOTIFY and COMMIT round trips). With one write per batch
what remains of a burst's latency is the requests' own CPU time (FastAPI and validation, ~0.5 ms each) on
the machine's share the API process gets.

Runs on the API's event loop (asyncpg, as the live updates); no thread, no psycopg2 connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from clinicflow.processing.store_pending import INSERT_SQL_ASYNCPG, NewRow, insert_results_async
from clinicflow.service.live import asyncpg_connect_kwargs

# Rows written by one statement at most, and writes in flight at once (each on its own connection): a
# burst is written in several small batches that overlap the parsing of the next requests, so the first
# answers go out before the last requests are read (bench run G: 25 x 4; run F: 500 x 2).
MAX_BATCH = 25
WRITERS = 4
# Data files whose row count and columns the API keeps in memory.
KNOWN_FILES = 10_000


class GroupCommit:
    """``await insert(row)``: the row's id once it is committed together with the rows waiting beside it."""

    def __init__(self, database: Any, *, writers: int = WRITERS, max_batch: int = MAX_BATCH) -> None:
        self._database = database
        self._writers = writers
        self._max_batch = max_batch
        self._waiting: list[tuple[NewRow, asyncio.Future[int]]] = []
        self._active = 0
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None

    async def start(self) -> None:
        """Open the connections and prepare the statement (the app's start-up, not the first request)."""
        await self._connections()

    async def _connections(self) -> Any:
        if self._pool is None:
            import asyncpg

            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    # JIT off: asyncpg's type introspection (its first statement with arrays) took seconds
                    # with it on a loaded machine; these statements never gain from it.
                    self._pool = await asyncpg.create_pool(
                        min_size=self._writers,
                        max_size=self._writers,
                        init=self._prepare,
                        server_settings={"jit": "off"},
                        **asyncpg_connect_kwargs(self._database),
                    )
        return self._pool

    async def _prepare(self, conn: Any) -> None:
        await conn.prepare(INSERT_SQL_ASYNCPG)

    async def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 10)
            self._pool = None

    async def insert(self, row: NewRow) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if self._active < self._writers:
            self._active += 1
            asyncio.create_task(self._write_waiting())  # noqa: RUF006 - it ends when nothing waits
        return await future

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
                await self._write(batch)
        finally:
            self._active -= 1

    async def _write(self, batch: list[tuple[NewRow, asyncio.Future[int]]]) -> None:
        try:
            ids = await self.write_rows([row for row, _ in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the requests (a 500 each: nothing was written)
            if len(batch) > 1:  # one row may be at fault (its data file gone): each alone, the others succeed
                for one in batch:
                    await self._write([one])
            elif not batch[0][1].done():
                batch[0][1].set_exception(exc)
            return
        for (_, future), result_id in zip(batch, ids, strict=True):
            if not future.done():  # done: the request was cancelled (client gone); its row is written anyway
                future.set_result(result_id)

    async def write_rows(self, rows: Sequence[NewRow]) -> list[int]:
        """Insert ``rows`` PENDING in one statement (one commit); their ids in order."""
        pool = await self._connections()
        async with pool.acquire() as conn:
            return await insert_results_async(conn, rows)


class KnownFiles:
    """Data files by id, kept in memory (they never change once registered): one read per file, shared by
    the requests that ask for it at the same time (a burst's first requests do not each take a
    threadpool slot and a connection for the same row)."""

    def __init__(self, read: Callable[[int], Awaitable[dict[str, Any] | None]], size: int = KNOWN_FILES) -> None:
        self._read = read
        self._size = size
        self._files: dict[int, dict[str, Any]] = {}
        self._reading: dict[int, asyncio.Future[dict[str, Any] | None]] = {}

    async def get(self, file_id: int) -> dict[str, Any] | None:
        """The data file's row, or None when no such file is registered (not remembered: it may come)."""
        found = self._files.get(file_id)
        if found is not None:
            return found
        reading = self._reading.get(file_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(file_id))
            self._reading[file_id] = reading
            reading.add_done_callback(lambda _done: self._reading.pop(file_id, None))
        data_file = await asyncio.shield(reading)
        if data_file is not None:
            if len(self._files) >= self._size:
                self._files.clear()
            self._files[file_id] = data_file
        return data_file
