"""The anchor of bench_processing: the same processors behind a minimal Celery + Redis app.

The stack the processing service replaced: a request writes the PENDING row
and ``.delay()``s a Celery task; prefork workers run it. The task is the
same runner the task workers run (claim PENDING -> PROCESSING once, process,
COMPLETED/FAILED on the row), so the two differ only in dispatch.

    celery -A bench.celery_anchor worker --concurrency 4 --pool prefork
(broker ``CLINICFLOW_BENCH_CELERY_BROKER``, default redis://127.0.0.1:6379/0; the row's database and
bucket from the same settings as the service).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from celery import Celery

BROKER = os.environ.get("CLINICFLOW_BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0")
app = Celery("clinicflow_anchor", broker=BROKER)
app.conf.update(
    task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True, worker_hijack_root_logger=False
)


@cache
def _context() -> tuple[Any, Any, Any]:
    from clinicflow.connectors.objectstore.clients import store_for_block
    from clinicflow.processing.custom import scripts_dir_from_env
    from clinicflow.service.settings import processing_bucket, processing_database

    return processing_database(), store_for_block(processing_bucket()), scripts_dir_from_env()


@app.task(name="process_result")
def process_result_celery(result_id: int) -> None:
    from clinicflow.processing.runner import process_result

    database, writer, scripts_dir = _context()
    process_result(
        database.connect, writer, result_id, flow_run_id=None, scripts_dir=scripts_dir, worker=f"celery-{os.getpid()}"
    )
