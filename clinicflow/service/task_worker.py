"""Task workers of the processing service: warm processes that run ``process-result-background`` task runs.

``serve_processing_tasks(limit)`` runs one task worker in this process
(``prefect.task_worker.serve``: a WebSocket subscription to the Prefect
server's queue of scheduled background task runs, ``limit`` runs at once in
threads) with the lease keeper beside it. ``run_workers(concurrency, limit)``
is ``clinicflow processing workers``: ``concurrency`` such processes (as a
Celery worker's ``--concurrency`` forks children), each restarted if it dies.

Needs ``PREFECT_API_URL`` (task workers cannot use the embedded server). No
storage is shared with the API: a task run has no parameters (its row holds
its id) and persists no result.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.core import secret_env, settings
from clinicflow.core.heap import freeze_start_up_objects

log = logging.getLogger("clinicflow.service")
# A child that dies this soon after its start is not restarted again at once (a broken set-up, not a crash).


def serve_processing_tasks(limit: int) -> None:
    """One task worker in this process until SIGTERM/SIGINT."""
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings
    from prefect.task_worker import serve

    from clinicflow.connectors.objectstore.clients import store_for_block
    from clinicflow.connectors.postgres.pool import ConnectionPool
    from clinicflow.processing import sandbox, store
    from clinicflow.processing.custom import script_runner_url, scripts_dir_from_env
    from clinicflow.processing.lease import LeaseKeeper
    from clinicflow.service.settings import processing_bucket, processing_database
    from tasks.processing import WorkerContext, configure_worker, process_result_background

    if not PREFECT_API_URL.value():
        raise RuntimeError("task workers need PREFECT_API_URL (a Prefect server; not the embedded one)")
    database = processing_database()
    with connected(database) as conn:
        store.ensure_tables(conn)
    lease = LeaseKeeper(database.connect, on_reaped=_crash_in_prefect)
    configure_worker(
        WorkerContext(
            database=database,
            writer=store_for_block(processing_bucket()),
            scripts_dir=scripts_dir_from_env(),
            lease=lease,
            connections=ConnectionPool(database.connect, keep=limit),
        )
    )
    # The mode this worker's scripts run in (the API's /health reports its own process's).
    if (runner_url := script_runner_url()) is None:
        sandbox.log_mode()
    else:
        log.info("custom scripts run by the script runner at %s", runner_url)
    lease.start()
    freeze_start_up_objects()
    log.info("task worker %s serving process-result-background (limit %s)", lease.worker, limit)
    try:
        # Task runs have no flow run: their log lines stay in this process (without a warning for each).
        with temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
            serve(process_result_background, limit=limit)
    finally:
        lease.stop()


def _crash_in_prefect(reaped: Any) -> None:
    """A row this worker's reaper ended CRASHED: its task run Crashed in Prefect (from the lease thread)."""
    if not reaped.task_run_id:
        return
    from prefect.utilities.asyncutils import run_coro_as_sync

    from clinicflow.service.dispatch import crash_task_run

    async def crash() -> None:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            await crash_task_run(client, reaped.task_run_id, reaped.error)

    try:
        run_coro_as_sync(crash())
    except Exception as exc:  # noqa: BLE001 - the row is CRASHED either way
        log.warning("could not mark task run %s Crashed: %s", reaped.task_run_id, type(exc).__name__)


def run_workers(concurrency: int, limit: int) -> int:
    """``concurrency`` task-worker processes, each restarted when it dies, until SIGTERM/SIGINT; exit code 0 (1:
    a process kept dying at start, see :func:`~clinicflow.service.workers.supervise`)."""
    if concurrency == 1:
        serve_processing_tasks(limit)
        return 0
    from clinicflow.service.workers import start_with_secrets, supervise

    command = [sys.executable, "-m", "clinicflow.service.task_worker", str(limit)]
    return supervise(lambda: start_with_secrets(command), concurrency, "task worker")


if __name__ == "__main__":
    secret_env.capture_and_reexec()
    logging.basicConfig(level=settings.log_level())
    serve_processing_tasks(int(sys.argv[1]))
