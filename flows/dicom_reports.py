"""Flow ``extract_dicom_reports``: reports in PostgreSQL → DICOM files → JPGs + CSV in a bucket.

Wiring only (logic in :mod:`clinicflow.dicom`): validate the options
(:class:`clinicflow.dicom.options.DicomRunOptions`: a bad value fails the run
before any work, naming the field), resolve the blocks, count,
read keyset pages in the flow, map batches of whole files onto
``dicom-batch`` tasks with at most ``max_concurrency`` in flight, write the
CSV from the durable state, publish progress and a summary. The flow ends
Failed when more files failed than ``failure_threshold`` (saying how many),
when a batch could not be processed at all, when the CSVs could not be
written (the summary and failures artifacts are still published), or when a
stop request (SIGTERM) ended it early with its progress saved.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Failed

from blocks.buckets import DICOM_BUCKET_BLOCK, resolve_bucket
from blocks.databases import PostgresServer
from blocks.resolve import DICOM_REPORTS_BLOCK, resolve_block
from clinicflow.connectors.objectstore.clients import store_for_block
from clinicflow.core import cancel
from clinicflow.core.errors import one_line
from clinicflow.core.logs import get_logger
from clinicflow.core.settings import dicom_range_deployment
from clinicflow.dicom import partitions as dicom_partitions
from clinicflow.dicom.options import FAN_OUT_FIELDS, DicomRunOptions
from clinicflow.dicom.outputs import run_failure, summary_rows
from clinicflow.dicom.pipeline import BatchResult, BatchSettings
from clinicflow.dicom.reports import ReportsSource, batches
from clinicflow.dicom.state import StateStore
from clinicflow.scaleout.fanout import failed_children_message
from flows.fanout_runner import child_slot, run_partitions
from flows.options_params import options_parameters, source_version
from flows.progress import RunProgress, artifact_key
from flows.runtime import flow_run_id
from tasks.dicom import (
    plan_ranges_task,
    prepare_task,
    process_batch_task,
    read_page_task,
    record_run_task,
    run_totals_task,
    write_outputs_task,
)


def _process_pages(
    source: ReportsSource,
    settings: BatchSettings,
    state_server: PostgresServer,
    state_schema: str,
    bucket: Any,
    total_files: int,
    *,
    page_size: int,
    batch_size: int,
    max_concurrency: int,
    progress_key: str | None = None,
) -> tuple[BatchResult, list[str]]:
    """Read pages in the flow, keep at most ``max_concurrency`` batch tasks in flight; sum their results."""
    progress = RunProgress(
        total_files,
        key=progress_key or artifact_key("dicom", settings.dataset, "progress"),
        description=f"DICOM files of {settings.dataset}",
    )
    total = BatchResult()
    batch_errors: list[str] = []
    in_flight: dict[PrefectFuture[BatchResult], int] = {}

    def collect(future: PrefectFuture[BatchResult]) -> None:
        files = in_flight.pop(future)
        try:
            total.add(future.result())
        except Exception as exc:  # noqa: BLE001 - a lost batch is reported, the others go on
            batch_errors.append(one_line(exc))
        progress.advance(files)

    try:
        after = None
        while not cancel.requested():
            page = read_page_task(source, after, page_size)
            if not page.files:
                break
            for files in batches(page.files, batch_size):
                if len(in_flight) >= max_concurrency:
                    collect(next(as_completed(list(in_flight))))
                if cancel.requested():
                    break
                future = process_batch_task.submit(files, settings, state_server, state_schema, bucket)
                in_flight[future] = len(files)
            after = page.last_key
        while in_flight:
            collect(next(as_completed(list(in_flight))))
    finally:
        progress.close()
    return total, batch_errors


@flow(name="extract-dicom-reports", version=source_version(__file__))
@options_parameters(reports_block=DICOM_REPORTS_BLOCK, bucket_block=DICOM_BUCKET_BLOCK)
def extract_dicom_reports(options: DicomRunOptions) -> Any:
    """Extract the DICOM files of a reports query into ``<bucket>/<dataset>/``.

    ``query``: SQL text or a view name on the ``reports_block`` database,
    yielding ``study_id, series_id, instance_id, file_location`` and report
    fields. Progress is kept in ``state_block`` (default: the reports
    database), schema ``state_schema``, so a rerun resumes. ``base_location``
    resolves relative file locations (a folder or an http/gs/s3 prefix).
    Absolute and ``file://`` locations must lie inside ``allowed_roots`` (or
    the base folder); HTTP redirects to private/loopback addresses are
    refused unless ``allow_private_redirects``.

    ``mode="fanout"``: the files are split into about ``partitions`` key ranges of whole files, each
    converted by a child run of deployment ``dicom-reports-range`` (``fanout_width`` at a time); this run
    then writes the CSVs from PostgreSQL. ``run_key`` (default: this flow run's id) names the children
    and the run in the state tables: rerun with the same ``run_key`` to redo only failed ranges.
    """
    # Prefect's own SIGTERM handler raises in this thread while batch threads keep downloading (and the
    # task runner waits for them): inside the run, SIGTERM only asks every batch to stop.
    with cancel.sigterm_stops_run():
        return _extract(options)


def _fan_out_ranges(
    source: ReportsSource,
    options: DicomRunOptions,
    files: int,
    run_id: str,
    state_server: PostgresServer,
    partitions: int,
    width: int,
) -> tuple[BatchResult, list[str]]:
    """Each key range as a child run; the run's totals read back from the state tables."""
    ranges = plan_ranges_task(source, files, partitions)
    get_logger("clinicflow.dicom").info("%s: %d files in %d key ranges", options.dataset, files, len(ranges))
    child_options = options.model_dump(mode="json", exclude=set(FAN_OUT_FIELDS))
    parameters = {
        r.name(i): {"options": child_options, "key_range": r.as_parameter(), "run_id": run_id}
        for i, r in enumerate(ranges)
    }
    children = run_partitions(dicom_range_deployment(), run_id, parameters, width=width) if parameters else {}
    failed = failed_children_message(children, "key ranges")
    total = run_totals_task(state_server, options.state_schema, options.dataset, run_id)
    return total, ([failed] if failed is not None else [])


def _extract(options: DicomRunOptions) -> Any:
    dataset, state_schema = options.dataset, options.state_schema
    log = get_logger("clinicflow.dicom")
    started = time.monotonic()
    fan_out = (options.partitions, options.fanout_width) if options.mode == "fanout" else None
    # Fanned out, children record under the run key, so a rerun with it keeps the ranges already done.
    run_id = (options.run_key or flow_run_id()) if fan_out else flow_run_id()
    reports_server = resolve_block(options.reports_block, PostgresServer)
    state_server = resolve_block(options.state_block, PostgresServer) if options.state_block else reports_server
    bucket = resolve_bucket(options.bucket_kind, options.bucket_block)
    bucket_name = store_for_block(bucket).describe()
    source = ReportsSource(reports_server, options.query)

    with StateStore(state_server, dataset, state_schema) as lock_holder, lock_holder.run_lock():
        count, report_fields = prepare_task(source, state_server, dataset, state_schema, run_id)
        log.info("%s: %d files in %d report rows; writing to %s", dataset, count.files, count.rows, bucket_name)
        settings = options.batch_settings(dataset, run_id)
        if fan_out is None:
            total, batch_errors = _process_pages(
                source,
                settings,
                state_server,
                state_schema,
                bucket,
                count.files,
                page_size=options.page_size,
                batch_size=options.batch_size,
                max_concurrency=options.max_concurrency,
            )
        else:
            total, batch_errors = _fan_out_ranges(source, options, count.files, run_id, state_server, *fan_out)
        # A batch that could not run (or a stop) leaves files out of this run: keep the previous CSV rather
        # than publish a shorter one.
        outputs = None
        csv_error = None
        if not batch_errors and not total.cancelled and not cancel.requested():
            try:
                outputs = write_outputs_task(state_server, dataset, state_schema, bucket, report_fields, run_id)
            except Exception as exc:  # noqa: BLE001 - the summary and failures artifacts must still be published
                csv_error = one_line(exc)
                log.error("%s: writing the CSVs failed: %s", dataset, csv_error)

    seconds = time.monotonic() - started
    create_table_artifact(
        summary_rows(count, total, outputs, seconds, bucket_name),
        key=artifact_key("dicom", dataset, "summary"),
        description=f"DICOM reports {dataset}: {total.done} converted, {total.skipped} already done, "
        f"{total.failed} failed, {seconds:.1f}s",
    )
    if total.failures:
        rows = [{"file": f.key.label(), "stage": f.stage, "kind": f.kind, "reason": f.reason} for f in total.failures]
        create_table_artifact(
            rows,
            key=artifact_key("dicom", dataset, "failures"),
            description=f"{total.failed} failed file(s)"
            + (f" (first {len(rows)} shown)" if total.failed > len(rows) else "")
            + f"; all in {state_schema}.failures"
            + (f" and {outputs.failures_object}" if outputs else ""),
        )

    failed = total.failed + (1 if count.rows_without_key else 0)
    stopped = total.cancelled or cancel.requested()
    failure = run_failure(total, count, failed, options.failure_threshold, batch_errors, csv_error, stopped=stopped)
    # The verdict beside the failures: failed files within the threshold leave the run ok (`clinicflow status`).
    record_run_task(state_server, state_schema, dataset, run_id, failed, options.failure_threshold, failure)
    if failure is not None:
        # The run's figures with the reason: a failed run printed the reason alone, not what it did.
        return Failed(
            message=f"{failure} ({count.files} file(s): {total.done} converted, {total.skipped} already done, "
            f"{total.failed} failed; outputs in {bucket_name})"
        )
    return {
        "dataset": dataset,
        "files": count.files,
        "converted": total.done,
        "skipped": total.skipped,
        "failed": failed,
        "jpgs": total.jpgs,
        "bytes": total.bytes,
        "uploaded": total.uploaded,
        "csv_rows": outputs.csv_rows if outputs else 0,
        "csv_object": outputs.csv_object if outputs else None,
        "seconds": round(seconds, 2),
    }


@flow(name="dicom-reports-range")
def dicom_reports_range(options: dict[str, Any], key_range: list[list[Any] | None], run_id: str) -> Any:
    """One key range of a fanned-out ``extract_dicom_reports`` (deployment ``dicom-reports-range``).

    Converts the files with ``low <= key < high`` exactly as the in-pod run does, recording them under the
    parent's ``run_id`` (the parent holds the dataset and writes the CSVs), while holding one slot of the
    global concurrency limit. Ends Failed when a batch could not run or a stop request ended it; bad files
    do not fail it (they are recorded; the parent applies the failure threshold).
    """
    run_options = DicomRunOptions.from_values(**options)
    bounds = dicom_partitions.FileKeyRange.from_parameter(key_range)
    with cancel.sigterm_stops_run(), child_slot():
        return _extract_range(run_options, bounds, run_id)


def _extract_range(options: DicomRunOptions, bounds: dicom_partitions.FileKeyRange, run_id: str) -> Any:
    dataset, state_schema = options.dataset, options.state_schema
    reports_server = resolve_block(options.reports_block, PostgresServer)
    state_server = resolve_block(options.state_block, PostgresServer) if options.state_block else reports_server
    bucket = resolve_bucket(options.bucket_kind, options.bucket_block)
    source = ReportsSource(reports_server, options.query, bounds.low, bounds.high)
    with StateStore(state_server, dataset, state_schema) as lock_holder, lock_holder.run_lock(bounds.digest()):
        count, _ = prepare_task(source, state_server, dataset, state_schema, run_id)
        settings = options.batch_settings(dataset, run_id)
        total, batch_errors = _process_pages(
            source,
            settings,
            state_server,
            state_schema,
            bucket,
            count.files,
            page_size=options.page_size,
            batch_size=options.batch_size,
            max_concurrency=options.max_concurrency,
            progress_key=artifact_key("dicom", dataset, "progress", bounds.digest()),
        )
    if total.cancelled or cancel.requested():
        return Failed(message=f"stopped by SIGTERM: {total.done} file(s) converted; a rerun resumes")
    if batch_errors:
        return Failed(message=f"{len(batch_errors)} batch(es) could not be processed: " + "; ".join(batch_errors[:3]))
    # A small pointer: the results are in the state tables.
    return {
        "dataset": dataset,
        "run_id": run_id,
        "files": count.files,
        "converted": total.done,
        "skipped": total.skipped,
        "failed": total.failed,
    }
