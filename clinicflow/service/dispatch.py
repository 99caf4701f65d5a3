"""Dispatch of processing requests: the API answers once the PENDING row is written; this sends it on.

Most rows become background task runs of ``process-result-background``
(deferred, like ``task.delay()``) that a warm task worker picks up at once.
Rows whose data file has at least ``deployment_min_rows`` rows
(``CLINICFLOW_PROCESSING_DEPLOYMENT_MIN_ROWS``, default 20,000,000) run as
``process-data`` deployment runs instead: on Kubernetes each is its own Job
with its own memory limit, so one huge file cannot take a shared worker down.

The dispatcher runs in its own thread with its own event loop and Prefect
client: creating a task run does blocking work (parameters written to the
task-scheduling storage), which must not hold up the API's answers.

The row is the outbox: a row written but never sent (the API stopped in
between) is found by :meth:`Dispatcher.rescue` and sent then. The task run's
id is derived from the row (uuid5), so sending twice can never make two runs.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool

from clinicflow.core import settings
from clinicflow.processing import store
from clinicflow.processing.lease import lease_seconds
from clinicflow.service.pool import ConnectionPool

log = logging.getLogger("clinicflow.service")
DEFAULT_DEPLOYMENT_MIN_ROWS = 20_000_000
# Task-run creations in flight at once: a burst of requests queues here, not in the Prefect API.
SENDERS = 4
# A PENDING row not sent after this long is sent again (the API that wrote it stopped first).
RESCUE_AFTER_SECONDS = 30.0
_NAMESPACE = uuid.UUID("5b0f6a55-3c1e-4e53-9a4e-0c6f1c6b2a26")


def deployment_min_rows() -> int:
    return settings.processing_deployment_min_rows(DEFAULT_DEPLOYMENT_MIN_ROWS)


def task_run_id_for(database_key: str, result_id: int) -> uuid.UUID:
    """The one task-run id a row can have (per results database)."""
    return uuid.uuid5(_NAMESPACE, f"{database_key}/processing-result-{result_id}")


class Dispatcher:
    def __init__(self, pool: ConnectionPool, database_key: str,
                 start_deployment_run: Callable[[Any, int], Awaitable[str]]) -> None:
        self.pool = pool
        self.database_key = database_key
        self.start_deployment_run = start_deployment_run
        self.min_rows = deployment_min_rows()
        self._queue: asyncio.Queue[tuple[int, int]] | None = None
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="clinicflow-dispatcher", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=120)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        from prefect.client.orchestration import get_client

        self._queue = asyncio.Queue()
        self._stopping = asyncio.Event()
        async with get_client() as client:
            self._client = client
            tasks = [asyncio.create_task(self._send_forever()) for _ in range(SENDERS)]
            tasks.append(asyncio.create_task(self._housekeeping_forever()))
            self._ready.set()
            await self._stopping.wait()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)

    def submit(self, result_id: int, row_count: int) -> None:
        """Queue one row for sending (from any thread or event loop; returns at once)."""
        assert self._loop is not None, "the dispatcher is not started"
        assert self._queue is not None, "the dispatcher is not started"
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (result_id, row_count))

    def as_deployment_run(self, row_count: int) -> bool:
        return row_count >= self.min_rows

    def _db(self, fn: Any, *args: Any) -> Any:
        with self.pool.connection() as conn:
            return fn(conn, *args)

    async def send(self, result_id: int, row_count: int) -> None:
        """Create the run for one row; a row that cannot be sent ends FAILED with the reason."""
        try:
            if self.as_deployment_run(row_count):
                flow_run_id = await self.start_deployment_run(self._client, result_id)
                await run_in_threadpool(self._db, store.set_flow_run_id, result_id, flow_run_id)
            else:
                task_run_id = await self._create_task_run(result_id)
                await run_in_threadpool(self._db, store.set_task_run_id, result_id, task_run_id)
        except Exception as exc:  # noqa: BLE001 - the row records why it will never run
            reason = f"could not submit the run: {type(exc).__name__}: {exc}"
            log.warning("result %s: %s", result_id, reason)
            await run_in_threadpool(self._db, store.mark_ended, result_id, "FAILED", reason)

    async def _create_task_run(self, result_id: int) -> str:
        from prefect.exceptions import ObjectNotFound

        from clinicflow.core.retry import backoff_delays
        from clinicflow.service.app import _transient_api_error
        from tasks.processing import process_result_background

        run_id = task_run_id_for(self.database_key, result_id)
        delays = backoff_delays(retries=4, base=0.5)
        for attempt in range(len(delays) + 1):
            try:
                await process_result_background.create_run(client=self._client, id=run_id, deferred=True,
                                                           parameters={"result_id": result_id})
                return str(run_id)
            except Exception as exc:
                # A retry after a lost answer: the first attempt did create it.
                with contextlib.suppress(ObjectNotFound):
                    await self._client.read_task_run(run_id)
                    return str(run_id)
                if attempt >= len(delays) or not _transient_api_error(exc):
                    raise
                await asyncio.sleep(delays[attempt])
        raise AssertionError("unreachable")

    async def _send_forever(self) -> None:
        assert self._queue is not None
        while True:
            result_id, row_count = await self._queue.get()
            await self.send(result_id, row_count)

    async def rescue(self) -> list[int]:
        """Send again the PENDING rows that were written but never sent."""
        ids: list[int] = await run_in_threadpool(self._db, store.undispatched, RESCUE_AFTER_SECONDS)
        for result_id in ids:
            row = await run_in_threadpool(self._db, store.get_result, result_id, False)
            data_file = row and await run_in_threadpool(self._db, store.get_data_file, row["data_file_id"])
            if data_file:
                self.submit(result_id, int(data_file["row_count"]))
        return ids

    async def reap(self) -> list[store.Reaped]:
        """Rows of a killed task worker -> CRASHED (also done by every task worker), their task runs Crashed."""
        ended: list[store.Reaped] = await run_in_threadpool(self._db, store.reap_lost, lease_seconds())
        for reaped in ended:
            log.warning("result %s ended CRASHED: its task worker's lease ran out", reaped.id)
            if reaped.task_run_id:
                with contextlib.suppress(Exception):
                    await crash_task_run(self._client, reaped.task_run_id, reaped.error)
        return ended

    async def _housekeeping_forever(self) -> None:
        while True:
            await asyncio.sleep(min(lease_seconds() / 2, RESCUE_AFTER_SECONDS))
            try:
                await self.reap()
                await self.rescue()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("dispatcher housekeeping: %s: %s", type(exc).__name__, exc)


async def crash_task_run(client: Any, task_run_id: str, message: str) -> None:
    """The task run of a row reaped CRASHED: Crashed in Prefect too (a killed worker could not say so)."""
    from prefect.states import Crashed

    await client.set_task_run_state(uuid.UUID(task_run_id), Crashed(message=message[:500]), force=True)


async def cancel_task_run(client: Any, task_run_id: str) -> str | None:
    """Cancel a background task run that has not finished (the runner also stops at its next progress write)."""
    from prefect.states import Cancelled

    task_run = await client.read_task_run(uuid.UUID(task_run_id))
    if task_run.state is None or task_run.state.is_final():
        return None
    await client.set_task_run_state(uuid.UUID(task_run_id), Cancelled(message="result deleted"), force=True)
    return task_run_id
