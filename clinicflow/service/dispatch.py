"""Dispatch of processing requests: the API answers once the PENDING row is written; this sends it on.

Most rows become background task runs of ``process-result-background``
(deferred runs, as ``task.delay()`` makes) that a warm task worker picks up
at once. Rows whose data file has at least ``deployment_min_rows`` rows
(``CLINICFLOW_PROCESSING_DEPLOYMENT_MIN_ROWS``, default 20,000,000) run as
``process-data`` deployment runs instead: on Kubernetes each is its own Job
with its own memory limit, so one huge file cannot take a shared worker down.

The results table is the outbox. The API writes the row (with the id its
task run will have) and wakes the dispatcher; the dispatcher claims every
PENDING row not yet dispatched (:func:`store.claim_undispatched`: the rows just
written, and any whose claim ran out: an API process that stopped before
sending, a send that failed on a transient error) and creates the runs,
``SENDERS`` at a time, then marks the rows dispatched. A row is claimed for
``CLAIM_SECONDS``, so several API processes never send the same row at once;
sending a row again creates no second run (its task run id is fixed, and a
deployment run's idempotency key is the row id).

A background task run carries no parameters: the task worker finds its row
by the task run's id. So creating one is a single Prefect API call (nothing
written to the task-scheduling storage), and the task worker reads nothing
before it starts either.

The dispatcher runs in its own thread with its own event loop and Prefect
client, so the API's answers never wait for Prefect.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from clinicflow.processing import store
from clinicflow.processing.lease import lease_seconds
from clinicflow.service.pool import ConnectionPool

log = logging.getLogger("clinicflow.service")
DEFAULT_DEPLOYMENT_MIN_ROWS = 20_000_000
# Runs created at once: a burst of requests queues here, not in the Prefect API.
SENDERS = 8
# A claimed row not dispatched after this long may be claimed again (its dispatcher stopped, or a send failed).
CLAIM_SECONDS = 30.0
# Without a wake-up, the dispatcher looks for claimable rows this often (rows of a stopped API process).
POLL_SECONDS = 5.0


def deployment_min_rows() -> int:
    return int(os.environ.get("CLINICFLOW_PROCESSING_DEPLOYMENT_MIN_ROWS") or DEFAULT_DEPLOYMENT_MIN_ROWS)


class Dispatcher:
    def __init__(self, pool: ConnectionPool, start_deployment_run: Callable[[Any, int], Awaitable[str]], *,
                 claim_seconds: float = CLAIM_SECONDS, poll_seconds: float = POLL_SECONDS) -> None:
        self.pool = pool
        self.start_deployment_run = start_deployment_run
        self.min_rows = deployment_min_rows()
        self.claim_seconds = claim_seconds
        self.poll_seconds = poll_seconds
        self._queue: asyncio.Queue[store.Undispatched] | None = None
        self._wake: asyncio.Event | None = None
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
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        async with get_client() as client:
            self._client = client
            tasks = [asyncio.create_task(self._send_forever()) for _ in range(SENDERS)]
            tasks.append(asyncio.create_task(self._claim_forever()))
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

    def wake(self) -> None:
        """A row was written: claim and send it now (from any thread or event loop; returns at once)."""
        assert self._loop is not None and self._wake is not None, "the dispatcher is not started"
        self._loop.call_soon_threadsafe(self._wake.set)

    def as_deployment_run(self, row_count: int) -> bool:
        return row_count >= self.min_rows

    def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self.pool.connection() as conn:
            return fn(conn, *args, **kwargs)

    async def claim(self) -> list[store.Undispatched]:
        """Claim the rows to send now and queue them for the senders."""
        assert self._queue is not None
        rows: list[store.Undispatched] = await asyncio.to_thread(self._db, store.claim_undispatched,
                                                                 self.claim_seconds)
        for row in rows:
            self._queue.put_nowait(row)
        return rows

    async def send(self, row: store.Undispatched) -> bool:
        """Create the run of one claimed row and mark it dispatched. A transient error leaves the row
        claimed (sent again once its claim runs out); any other error ends it FAILED with the reason."""
        try:
            if self.as_deployment_run(row.row_count):
                flow_run_id = await self.start_deployment_run(self._client, row.id)
                await asyncio.to_thread(self._db, store.mark_dispatched, row.id, flow_run_id=flow_run_id)
            else:
                if row.task_run_id is None:  # a row written by another program than the API
                    raise ValueError("the row has no task run id")
                await self._create_task_run(row.task_run_id)
                await asyncio.to_thread(self._db, store.mark_dispatched, row.id)
            return True
        except Exception as exc:  # noqa: BLE001 - the row records why it will never run
            from clinicflow.service.app import _transient_api_error

            reason = f"could not submit the run: {type(exc).__name__}: {exc}"
            if _transient_api_error(exc):
                log.warning("result %s: %s; sent again in %.0f s", row.id, reason, self.claim_seconds)
                return False
            log.warning("result %s: %s", row.id, reason)
            await asyncio.to_thread(self._db, store.mark_ended, row.id, "FAILED", reason)
            return False

    async def _create_task_run(self, task_run_id: str) -> None:
        from prefect.exceptions import ObjectNotFound

        from clinicflow.core.retry import backoff_delays
        from clinicflow.service.app import _transient_api_error
        from tasks.processing import process_result_background

        run_id = uuid.UUID(task_run_id)
        delays = backoff_delays(retries=4, base=0.5)
        for attempt in range(len(delays) + 1):
            try:
                await process_result_background.create_run(client=self._client, id=run_id, deferred=True)
                return
            except Exception as exc:
                # Sent before (a lost answer, or a dispatcher that stopped before marking the row): it exists.
                with contextlib.suppress(ObjectNotFound):
                    await self._client.read_task_run(run_id)
                    return
                if attempt >= len(delays) or not _transient_api_error(exc):
                    raise
                await asyncio.sleep(delays[attempt])

    async def _send_forever(self) -> None:
        assert self._queue is not None
        while True:
            row = await self._queue.get()
            await self.send(row)

    async def _claim_forever(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
            try:
                await self.claim()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("dispatcher: %s: %s", type(exc).__name__, exc)

    async def reap(self) -> list[store.Reaped]:
        """Rows of a killed task worker -> CRASHED (also done by every task worker), their task runs Crashed."""
        ended: list[store.Reaped] = await asyncio.to_thread(self._db, store.reap_lost, lease_seconds())
        for reaped in ended:
            log.warning("result %s ended CRASHED: its task worker's lease ran out", reaped.id)
            if reaped.task_run_id:
                with contextlib.suppress(Exception):
                    await crash_task_run(self._client, reaped.task_run_id, reaped.error)
        return ended

    async def _housekeeping_forever(self) -> None:
        while True:
            await asyncio.sleep(lease_seconds() / 2)
            try:
                await self.reap()
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
