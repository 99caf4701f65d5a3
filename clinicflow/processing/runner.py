"""One processing request, start to end: PROCESSING -> download -> processor -> COMPLETED or FAILED.

Plain logic for the ``process_data`` flow (and tests without Prefect). The
row is the canonical result: whatever goes wrong after PROCESSING is stored
on it as FAILED with the reason before the error propagates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

from clinicflow.core.dbapi import PgConnection
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.retry import RetryPolicy, call_with_retry
from clinicflow.processing import outbox, store
from clinicflow.processing.base import DataSource, InvalidRequest, ProcessingError
from clinicflow.processing.datafiles import DataFileError
from clinicflow.processing.processors import run_processor, validate_request
from clinicflow.processing.sandbox import max_result_bytes

log = logging.getLogger("clinicflow.processing")
# Progress rows are written at most this often (each is an UPDATE + NOTIFY).
PROGRESS_MIN_SECONDS = 0.5
# A running custom script (no progress of its own) checks this often that its row is still PROCESSING.
SCRIPT_ROW_CHECK_SECONDS = 1.0
# A run's copy of its data file lives under <tmp>/clinicflow-processing-<pid>-*/ (pid: to sweep after a kill).
WORKDIR_PREFIX = "clinicflow-processing-"

# A transient error (database or bucket briefly unreachable) is retried this often inside the run.
TRANSIENT_RETRIES = 2


class RowEnded(ClinicflowError):
    """The row left PROCESSING while the run was going (deleted, cancelled, declared crashed): stop quietly."""


def process_result(
    connect: Callable[[], Any],
    writer: Any,
    result_id: int | None,
    *,
    flow_run_id: str | None,
    scripts_dir: Path,
    workdir: Path | None = None,
    worker: str | None = None,
    task_run_id: str | None = None,
    retry_base_seconds: float = 1.0,
    track: Callable[[int], AbstractContextManager[Any]] | None = None,
) -> dict[str, Any]:
    """Process row ``result_id`` (None: the row of background task run ``task_run_id``); returns a short
    summary. Raises after marking the row FAILED.

    With ``worker`` (a task worker's id) the row is claimed PENDING -> PROCESSING only, so a task run
    delivered twice runs once; the worker's lease keeper renews ``heartbeat_at`` meanwhile (``track``).
    Transient errors (core.retry's classification) are retried; any other error fails the row at once.
    """
    conn = connect()
    try:
        if result_id is None:
            assert task_run_id is not None, "a row id or a task run id"
            result_id = outbox.result_for_task_run(conn, task_run_id)
            if result_id is None:
                return {"task_run_id": task_run_id, "status": "skipped", "reason": "no result has this task run"}
        with (track or _untracked)(result_id):
            return _claim_and_run(
                conn,
                connect,
                writer,
                result_id,
                flow_run_id=flow_run_id,
                scripts_dir=scripts_dir,
                workdir=workdir,
                worker=worker,
                task_run_id=task_run_id,
                retry_base_seconds=retry_base_seconds,
            )
    finally:
        conn.close()


@contextlib.contextmanager
def _untracked(_result_id: int) -> Iterator[None]:
    yield


def _claim_and_run(
    conn: Any,
    connect: Callable[[], Any],
    writer: Any,
    result_id: int,
    *,
    flow_run_id: str | None,
    scripts_dir: Path,
    workdir: Path | None,
    worker: str | None,
    task_run_id: str | None,
    retry_base_seconds: float,
) -> dict[str, Any]:
    try:
        started = (
            store.claim(conn, result_id, worker, task_run_id)
            if worker is not None
            else store.mark_processing(conn, result_id, flow_run_id)
        )
        if started is None:
            # Deleted, cancelled, or already claimed by another delivery: nothing to do, nothing to overwrite.
            row = store.get_result(conn, result_id, with_data=False)
            return {
                "result_id": result_id,
                "status": "skipped",
                "reason": f"result is {row['status'] if row else 'deleted'}",
            }

        def attempt() -> dict[str, Any]:
            try:
                return _run(conn, writer, result_id, scripts_dir, workdir)
            except RowEnded:
                return {"result_id": result_id, "status": "stopped", "reason": "the row ended during the run"}

        def reset(_exc: BaseException) -> None:
            nonlocal conn
            if conn.closed:
                conn = connect()
            else:
                conn.rollback()

        try:
            return call_with_retry(
                attempt,
                what=f"result {result_id}",
                logger=log,
                before_retry=reset,
                policy=RetryPolicy(TRANSIENT_RETRIES, retry_base_seconds),
            )
        except Exception as exc:
            reason = (
                str(exc)
                if isinstance(exc, (ProcessingError, DataFileError, InvalidRequest))
                else f"{type(exc).__name__}: {exc}"
            )
            if conn.closed:
                conn = connect()
            store.mark_ended(conn, result_id, "FAILED", reason)
            if isinstance(exc, (ProcessingError, DataFileError, InvalidRequest)):
                # The request's own fault, already named in its row: the run fails with that one line, not 30
                # lines of the library's frames in every worker's log.
                raise exc.with_traceback(None) from None
            raise
    finally:
        conn.close()


def sweep_orphaned_workdirs(workdir: Path | None = None) -> int:
    """Remove work folders of runs whose process is gone (killed before it could clean up); their count."""
    removed = 0
    for folder in Path(workdir or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = folder.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _run(conn: PgConnection, writer: Any, result_id: int, scripts_dir: Path, workdir: Path | None) -> dict[str, Any]:
    job = store.get_job(conn, result_id)
    assert job is not None
    row, data_file = job
    if data_file is None:
        raise ProcessingError(f"data file {row['data_file_id']} is not registered")
    columns = [c["name"] for c in data_file["columns"]]
    params = validate_request(row["processing_type"], row["parameters"], scripts_dir=scripts_dir, file_columns=columns)
    last = {"at": 0.0}

    def progress(fraction: float) -> None:
        now = time.monotonic()
        if now - last["at"] >= PROGRESS_MIN_SECONDS and fraction < 1.0:
            last["at"] = now
            if store.set_progress(conn, result_id, fraction) is None:
                raise RowEnded(result_id)

    checked = {"at": time.monotonic()}

    def still_wanted() -> None:
        if time.monotonic() - checked["at"] >= SCRIPT_ROW_CHECK_SECONDS:
            checked["at"] = time.monotonic()
            current = store.get_result(conn, result_id, with_data=False)
            conn.commit()  # no transaction held open while the script runs
            if current is None or current["status"] != "PROCESSING":
                raise RowEnded(result_id)

    sweep_orphaned_workdirs(workdir)
    with tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=workdir) as tmp:
        local = Path(tmp) / data_file["name"]
        try:
            writer.download(data_file["object_name"], local)
        except FileNotFoundError:
            # A file registered in the database whose bytes are not in this service's bucket (uploaded to another
            # files bucket, or deleted): said as such, not as a Python error about a path.
            raise DataFileError(
                f"{data_file['name']}: file {data_file['id']}'s stored copy is not in the files bucket "
                f"{writer.describe()} (deleted, or uploaded to another bucket: upload it again)"
            ) from None
        # Only the open descriptor keeps the copy: a kill from here on leaves nothing on disk.
        handle = os.open(local, os.O_RDONLY)
        local.unlink()
        try:
            source = DataSource(
                path=Path(f"/proc/self/fd/{handle}"),
                name=data_file["name"],
                format=data_file["format"],
                row_count=int(data_file["row_count"]),
                columns=columns,
            )
            if row["processing_type"] == "custom":
                from clinicflow.processing.custom import CustomParams, run_custom

                # validate_request built the custom processor's own model for this row.
                custom_params = cast(CustomParams, params)
                result = run_custom(source, custom_params, progress, scripts_dir, still_wanted=still_wanted)
            else:
                result = run_processor(row["processing_type"], source, params, progress)
        finally:
            os.close(handle)
    try:
        text = json.dumps(result, allow_nan=False)  # once: measured here, stored as is
    except (TypeError, ValueError) as exc:
        raise ProcessingError(f"result is not JSON-serialisable: {exc}") from None
    if (size := len(text)) > (limit := max_result_bytes()):
        raise ProcessingError(
            f"result of {size} bytes is larger than the limit of {limit} bytes (CLINICFLOW_PROCESSING_MAX_RESULT_MB)"
        )
    done = store.mark_completed(conn, result_id, text)
    return {
        "result_id": result_id,
        "status": done.status if done else "ended before completion",
        "processing_type": row["processing_type"],
    }
