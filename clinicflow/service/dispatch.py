"""Dispatch of processing requests: the API answers once the PENDING row is written; this sends it on.

Most rows become background task runs of ``process-result-background``
(deferred runs, as ``task.delay()`` makes) that a warm task worker picks up
at once. Rows whose data file has at least ``deployment_min_rows`` rows
(``CLINICFLOW_PROCESSING_DEPLOYMENT_MIN_ROWS``, default 20,000,000) run as
``process-data`` deployment runs instead: on Kubernetes each is its own Job
with its own memory limit, so one huge file cannot take a shared worker down.

The results table is the outbox. The API writes the row (with the id its
task run will have) and wakes the dispatcher; the dispatcher claims every
PENDING row not yet dispatched (:func:`outbox.claim_undispatched`: the rows just
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

The dispatcher is a child process of the API (:class:`~clinicflow.service.dispatcher_process.DispatcherProcess`) with
its own Prefect client: the API's answers never wait for Prefect, nor share an
interpreter with the work of creating runs. It wakes on the NOTIFY each new
row commits (the API's own rows and those of any other API process), and
looks for claimable rows every ``POLL_SECONDS`` besides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.postgres.pool import ConnectionPool
from clinicflow.core import secret_env, settings
from clinicflow.core.heap import freeze_start_up_objects
from clinicflow.core.retry import RetryPolicy, acall_with_retry
from clinicflow.processing import outbox, store
from clinicflow.processing.lease import lease_seconds
from clinicflow.service.dispatcher_process import say_ready

log = logging.getLogger("clinicflow.service")
DEFAULT_DEPLOYMENT_MIN_ROWS = 20_000_000
# Runs created at once: a burst of requests queues here, not in the Prefect API.
SENDERS = 8
# A claimed row not dispatched after this long may be claimed again (its dispatcher stopped, or a send failed).
CLAIM_SECONDS = 30.0
# A burst's rows are claimed once none came for BURST_QUIET_SECONDS, or after BURST_WAIT_SECONDS at most.
BURST_QUIET_SECONDS = 0.02
BURST_WAIT_SECONDS = 0.3
# Without a wake-up, the dispatcher looks for claimable rows this often (rows of a stopped API process).
POLL_SECONDS = 5.0


def deployment_min_rows() -> int:
    return settings.processing_deployment_min_rows(DEFAULT_DEPLOYMENT_MIN_ROWS)


def as_deployment_run(row_count: int) -> bool:
    """A file this large runs as a deployment run (its own Job), not on a shared task worker."""
    return row_count >= deployment_min_rows()


class Dispatcher:
    """Claims undispatched rows and creates their runs (in :func:`run_dispatcher`'s process)."""

    def __init__(
        self,
        pool: ConnectionPool,
        deployment: str,
        *,
        claim_seconds: float = CLAIM_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.pool = pool
        self.deployment = deployment
        self.claim_seconds = claim_seconds
        self.poll_seconds = poll_seconds
        self._queue: asyncio.Queue[outbox.Undispatched] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._client: Any = None

    async def run(self, live: Any, stopping: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Until ``stopping``: wake on every PENDING row's NOTIFY (``live``: a started LiveUpdates).

        ``on_ready`` is called once the first run could be created without a cold start (client connected,
        task imported); rows written before then are claimed at once, not at the first poll.
        """
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            self._client = client
            await self._warm_up()
            self._wake.set()
            tasks = [asyncio.create_task(self._send_forever()) for _ in range(SENDERS)]
            tasks += [
                asyncio.create_task(self._claim_forever()),
                asyncio.create_task(self._housekeeping_forever()),
                asyncio.create_task(self._wake_on_notify(live)),
            ]
            if on_ready is not None:
                on_ready()
            try:
                await stopping.wait()
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _warm_up(self) -> None:
        """What the first run would otherwise wait for: the task's import and the API connection."""
        from tasks.processing import process_result_background  # noqa: F401 - imported once, here

        try:
            await self._client.api_healthcheck()
        except Exception as exc:  # noqa: BLE001 - the senders report (and retry) an API that is down
            log.warning("dispatcher: the Prefect API did not answer its first call: %s", type(exc).__name__)

    async def _wake_on_notify(self, live: Any) -> None:
        subscriber = live.subscribe()
        while True:
            message = await subscriber.get()
            if message.get("status") == "PENDING":
                self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self.pool.connection() as conn:
            return fn(conn, *args, **kwargs)

    async def claim(self) -> list[outbox.Undispatched]:
        """Claim the rows to send now and queue them for the senders."""
        rows: list[outbox.Undispatched] = await asyncio.to_thread(
            self._db, outbox.claim_undispatched, self.claim_seconds
        )
        for row in rows:
            self._queue.put_nowait(row)
        return rows

    async def send(self, row: outbox.Undispatched) -> bool:
        """Create the run of one claimed row and mark it dispatched. A transient error leaves the row
        claimed (sent again once its claim runs out); any other error ends it FAILED with the reason."""
        try:
            if as_deployment_run(row.row_count):
                flow_run_id = await start_deployment_run(self._client, self.deployment, row.id)
                await asyncio.to_thread(self._db, outbox.mark_dispatched, row.id, flow_run_id=flow_run_id)
            else:
                if row.task_run_id is None:  # a row written by another program than the API
                    raise ValueError("the row has no task run id")
                await self._create_task_run(row.task_run_id)
                await asyncio.to_thread(self._db, outbox.mark_dispatched, row.id)
            return True
        except Exception as exc:  # noqa: BLE001 - the row records why it will never run
            reason = f"could not submit the run: {type(exc).__name__}: {exc}"
            if transient_api_error(exc):
                log.warning("result %s: %s; sent again in %.0f s", row.id, reason, self.claim_seconds)
                return False
            log.warning("result %s: %s", row.id, reason)
            await asyncio.to_thread(self._db, store.mark_ended, row.id, "FAILED", reason)
            return False

    async def _create_task_run(self, task_run_id: str) -> None:
        from prefect.exceptions import ObjectNotFound

        from tasks.processing import process_result_background

        run_id = uuid.UUID(task_run_id)

        async def create() -> None:
            try:
                await process_result_background.create_run(client=self._client, id=run_id, deferred=True)
            except Exception:
                # Sent before (a lost answer, or a dispatcher that stopped before marking the row): it exists.
                with contextlib.suppress(ObjectNotFound):
                    await self._client.read_task_run(run_id)
                    return
                raise

        await acall_with_retry(create, what=f"task run {run_id}", policy=CREATE_TASK_RUN_RETRY, logger=log)

    async def _send_forever(self) -> None:
        while True:
            row = await self._queue.get()
            await self.send(row)

    async def _claim_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
            await self._burst_written()
            try:
                await self.claim()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("dispatcher: %s: %s", type(exc).__name__, exc)

    async def _burst_written(self) -> None:
        """Wait while new rows keep arriving (a burst), up to BURST_WAIT_SECONDS: the API answers the burst
        before this process, the Prefect server and the task workers take the CPU for its runs (on a shared
        machine a burst's answers otherwise waited for them; bench/results/processing-history.md)."""
        waited = 0.0
        while waited < BURST_WAIT_SECONDS:
            await asyncio.sleep(BURST_QUIET_SECONDS)
            waited += BURST_QUIET_SECONDS
            if not self._wake.is_set():
                return
            self._wake.clear()

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


def transient_api_error(exc: BaseException) -> bool:
    """The project's retry classification, plus Prefect's own wrapper of an HTTP status error."""
    from clinicflow.core.retry import HTTP_TRANSIENT_STATUS, is_transient

    response = getattr(exc, "response", None)
    return is_transient(exc) or getattr(response, "status_code", None) in HTTP_TRANSIENT_STATUS


# Creating a run: a few quick retries of transient Prefect API errors (a Retry-After wins, within the row's
# claim); after them the row stays claimed and is sent again once its claim runs out.
CREATE_TASK_RUN_RETRY = RetryPolicy(
    retries=4, base_seconds=0.5, retry_on=transient_api_error, max_hint_seconds=CLAIM_SECONDS / 2
)
DEPLOYMENT_RUN_RETRY = RetryPolicy(
    retries=4, base_seconds=1.0, retry_on=transient_api_error, max_hint_seconds=CLAIM_SECONDS / 2
)


async def start_deployment_run(client: Any, deployment: str, result_id: int) -> str:
    """A run of the deployment for the row (returns at once). The row id is the idempotency key, so a
    retry after a transient API error can never create a second run."""
    from prefect.deployments.flow_runs import arun_deployment

    async def start() -> str:
        flow_run = await arun_deployment(
            deployment,
            client=client,
            parameters={"result_id": result_id},
            timeout=0,
            idempotency_key=f"processing-result-{result_id}",
            as_subflow=False,
        )
        return str(flow_run.id)

    return await acall_with_retry(
        start, what=f"result {result_id}: deployment run", policy=DEPLOYMENT_RUN_RETRY, logger=log
    )


def run_dispatcher() -> None:
    """The dispatcher process: until SIGTERM, or until its parent (the API) is gone."""
    from clinicflow.service.live import LiveUpdates
    from clinicflow.service.settings import DEPLOYMENT, processing_database

    database = processing_database()
    parent = os.getppid()
    with connected(database) as conn:
        store.ensure_tables(conn)  # the API may still be creating them

    def ready() -> None:
        freeze_start_up_objects()
        say_ready()

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)

        async def watch_parent() -> None:
            while os.getppid() == parent:
                await asyncio.sleep(1.0)
            stopping.set()

        live = LiveUpdates(database)
        live.start()
        pool = ConnectionPool(database.connect, size=SENDERS + 2)
        watcher = asyncio.create_task(watch_parent())
        try:
            await Dispatcher(pool, DEPLOYMENT).run(live, stopping, on_ready=ready)
        finally:
            watcher.cancel()
            await live.stop()
            pool.close()

    asyncio.run(main())


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


if __name__ == "__main__":
    secret_env.capture_and_reexec()
    logging.basicConfig(level=settings.log_level())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per run created
    run_dispatcher()
