"""Prefect tasks of the processing service: thin wrappers over :mod:`clinicflow.processing.runner`.

- ``process_result_task``: the step of the ``process_data`` flow (deployment runs).
- ``process_result_background``: the background task the API submits with
  ``.delay()``-style deferred runs and long-running task workers execute
  (``clinicflow processing workers``). It has no parameter: its row is the one
  holding its task run id; the worker process holds the database, the bucket
  and the lease keeper (:func:`configure_worker`).

Not retried by Prefect: a processor's failure is a result (FAILED with the
reason on the row); transient errors are retried inside the runner.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.databases import PostgresServer
from clinicflow.connectors.objectstore.clients import store_for_block
from clinicflow.connectors.postgres.pool import ConnectionPool
from clinicflow.processing.lease import LeaseKeeper
from clinicflow.processing.runner import process_result


@task(name="process-result", cache_policy=NO_CACHE)
def process_result_task(
    database: PostgresServer, bucket: Any, result_id: int, flow_run_id: str | None, scripts_dir: Path
) -> dict[str, Any]:
    return process_result(
        database.connect, store_for_block(bucket), result_id, flow_run_id=flow_run_id, scripts_dir=scripts_dir
    )


@dataclass
class WorkerContext:
    """What a task worker process resolves once and every background run uses."""

    database: PostgresServer
    writer: Any
    scripts_dir: Path
    lease: LeaseKeeper
    # Connections kept between runs (clinicflow.connectors.postgres.pool); None: a new one per run.
    connections: ConnectionPool | None = None


_worker: list[WorkerContext] = []


def configure_worker(context: WorkerContext) -> None:
    _worker[:] = [context]


# Nothing is persisted; a storage given here keeps each run from asking the server for its default storage.
@task(
    name="process-result-background",
    cache_policy=NO_CACHE,
    persist_result=False,
    result_storage=Path(tempfile.gettempdir()) / "clinicflow-task-results",
)
def process_result_background() -> dict[str, Any]:
    """Process the results row whose task run this is, in this task worker (claimed PENDING -> PROCESSING once).

    No parameters: the row is found by this task run's id (written on the row with the request), so neither
    the API nor the task worker touches the task-scheduling storage, and nothing is persisted as a result.
    """
    from prefect.runtime import task_run

    if not _worker:
        raise RuntimeError("process-result-background runs in a task worker (clinicflow processing workers)")
    context = _worker[0]
    connect = context.connections.connect if context.connections is not None else context.database.connect
    return process_result(
        connect,
        context.writer,
        None,
        flow_run_id=None,
        scripts_dir=context.scripts_dir,
        worker=context.lease.worker,
        task_run_id=str(task_run.get_id()),
        track=context.lease.track,
    )
