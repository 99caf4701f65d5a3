"""Prefect task of the ``process_data`` flow: a thin wrapper over :mod:`clinicflow.processing.runner`.

Not retried: a processor's failure is a result (FAILED with the reason on the
row), and a second attempt would find the row ended anyway.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.databases import PostgresServer
from clinicflow.connectors.objectstore.buckets import writer_for
from clinicflow.processing.runner import process_result


@task(name="process-result", cache_policy=NO_CACHE)
def process_result_task(database: PostgresServer, bucket: Any, result_id: int, flow_run_id: str | None,
                        scripts_dir: Path) -> dict[str, Any]:
    return process_result(database.connect, writer_for(bucket), result_id, flow_run_id=flow_run_id,
                          scripts_dir=scripts_dir)
