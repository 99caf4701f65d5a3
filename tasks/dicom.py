"""Prefect tasks of the DICOM reports flow: thin wrappers over ``clinicflow.dicom``.

Each task opens its own state connection and bucket client (tasks run in
threads and must not share them) and retries transient failures with the
project's retry policy. A retried batch is safe: done files are skipped and
half-uploaded files resume without uploading anything twice.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.databases import PostgresServer
from clinicflow.connectors.objectstore.clients import store_for_block
from clinicflow.core.retry import TASK_RETRY
from clinicflow.dicom.outputs import OutputsResult, write_outputs
from clinicflow.dicom.partitions import FileKeyRange, plan_key_ranges, recorded_run_totals
from clinicflow.dicom.pipeline import BatchResult, BatchSettings, prepare_run, process_batch
from clinicflow.dicom.reports import FileGroup, Page, ReportsSource, SourceCount
from clinicflow.dicom.state import StateStore


@task(name="dicom-prepare", cache_policy=NO_CACHE, **TASK_RETRY)
def prepare_task(
    source: ReportsSource, state_server: PostgresServer, dataset: str, schema: str, run_id: str
) -> tuple[SourceCount, list[str]]:
    with StateStore(state_server, dataset, schema) as state:
        return prepare_run(source, state, run_id)


@task(name="dicom-read-page", cache_policy=NO_CACHE, **TASK_RETRY)
def read_page_task(source: ReportsSource, after: tuple[Any, ...] | None, page_size: int) -> Page:
    return source.read_page(after, page_size)


@task(name="dicom-batch", cache_policy=NO_CACHE, **TASK_RETRY)
def process_batch_task(
    files: list[FileGroup], settings: BatchSettings, state_server: PostgresServer, schema: str, bucket: Any
) -> BatchResult:
    with StateStore(state_server, settings.dataset, schema) as state:
        return process_batch(files, settings, state, store_for_block(bucket))


@task(name="dicom-write-csv", cache_policy=NO_CACHE, **TASK_RETRY)
def write_outputs_task(
    state_server: PostgresServer, dataset: str, schema: str, bucket: Any, report_fields: list[str], run_id: str
) -> OutputsResult:
    with StateStore(state_server, dataset, schema) as state:
        return write_outputs(state, store_for_block(bucket), report_fields, run_id)


@task(name="dicom-plan-ranges", cache_policy=NO_CACHE, **TASK_RETRY)
def plan_ranges_task(source: ReportsSource, files: int, partitions: int) -> list[FileKeyRange]:
    return plan_key_ranges(source, files, partitions)


@task(name="dicom-read-run-totals", cache_policy=NO_CACHE, **TASK_RETRY)
def run_totals_task(state_server: PostgresServer, schema: str, dataset: str, run_id: str) -> BatchResult:
    return recorded_run_totals(state_server, schema, dataset, run_id)


@task(name="dicom-record-run", cache_policy=NO_CACHE, **TASK_RETRY)
def record_run_task(
    state_server: PostgresServer,
    schema: str,
    dataset: str,
    run_id: str,
    failed_files: int,
    failure_threshold: int,
    failure: str | None,
) -> None:
    with StateStore(state_server, dataset, schema) as store:
        store.record_run(run_id, failed_files, failure_threshold, failure)
