"""End of run: the CSV objects and the run summary.

The CSV is not accumulated in memory or on a pod's disk during the run: each
done file's CSV row is kept in PostgreSQL (``files.csv_row``), and at the end
the CSV object is written from that table in key order (byte-collation, so
the order never depends on a server locale). A resumed run therefore writes
exactly the CSV a clean run would. The object is uploaded only when its
content differs from what the upload log says is already in the bucket.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinicflow.connectors.objectstore.stores import ObjectStore, file_md5
from clinicflow.dicom.pipeline import BatchResult
from clinicflow.dicom.reports import SourceCount
from clinicflow.dicom.state import StateStore

REPORTS_CSV = "reports.csv"
FAILURES_CSV = "failures.csv"
FAILURE_COLUMNS = ("study_id", "series_id", "instance_id", "file_location", "stage", "kind", "reason")


@dataclass
class OutputsResult:
    csv_object: str
    csv_rows: int
    csv_uploaded: bool
    failures_object: str | None
    failures_rows: int
    failures_uploaded: bool
    objects: list[str] = field(default_factory=list)


def csv_object_name(dataset: str) -> str:
    return f"{dataset}/{REPORTS_CSV}"


def failures_object_name(dataset: str) -> str:
    return f"{dataset}/{FAILURES_CSV}"


def _upload_if_changed(path: Path, name: str, state: StateStore, writer: ObjectStore) -> bool:
    md5 = file_md5(path)
    if state.upload_md5(name) == md5 and writer.exists(name):
        return False
    writer.write(name, path)
    state.record_upload(name, path.stat().st_size, md5)
    return True


def write_outputs(state: StateStore, writer: ObjectStore, report_fields: list[str], run_id: str) -> OutputsResult:
    """Write ``<dataset>/reports.csv`` (and ``failures.csv`` when the run had failures) to the bucket."""
    dataset = state.dataset
    with tempfile.TemporaryDirectory(prefix="clinicflow-dicom-csv-") as tmp:
        # failures.csv first: a reports.csv that cannot be written must not take the failure list with it.
        failures = state.run_failures(run_id)
        failures_name: str | None = None
        failures_uploaded = False
        if failures:
            failures_path = Path(tmp) / FAILURES_CSV
            with open(failures_path, "w", encoding="utf-8", newline="") as out:
                w = csv.writer(out, lineterminator="\n")
                w.writerow(FAILURE_COLUMNS)
                for f in failures:
                    w.writerow(["" if f[c] is None else f[c] for c in FAILURE_COLUMNS])
            failures_name = failures_object_name(dataset)
            failures_uploaded = _upload_if_changed(failures_path, failures_name, state, writer)
        elif state.upload_md5(failures_object_name(dataset)) is not None:
            # An earlier run's failure list no longer applies: every file now converts.
            writer.delete(failures_object_name(dataset))
            state.forget_upload(failures_object_name(dataset))

        csv_path = Path(tmp) / REPORTS_CSV
        with open(csv_path, "w", encoding="utf-8", newline="") as out:
            rows = state.write_csv(out, report_fields, run_id)
        csv_name = csv_object_name(dataset)
        csv_uploaded = _upload_if_changed(csv_path, csv_name, state, writer)
    objects = [csv_name] + ([failures_name] if failures_name else [])
    return OutputsResult(csv_name, rows, csv_uploaded, failures_name, len(failures), failures_uploaded, objects)


def summary_rows(
    count: SourceCount, result: BatchResult, outputs: OutputsResult | None, seconds: float, bucket: str
) -> list[dict[str, Any]]:
    """The summary artifact: one metric per row."""
    rows: list[dict[str, Any]] = [
        {"metric": "files in source", "value": count.files},
        {"metric": "report rows in source", "value": count.rows},
        {"metric": "files converted this run", "value": result.done},
        {"metric": "files already done (skipped)", "value": result.skipped},
        {"metric": "files failed", "value": result.failed},
        {"metric": "DICOM bytes", "value": result.bytes},
        {"metric": "JPGs", "value": result.jpgs},
        {
            "metric": "objects uploaded",
            "value": result.uploaded
            + (outputs.csv_uploaded if outputs else 0)
            + (outputs.failures_uploaded if outputs else 0),
        },
        {"metric": "objects found already uploaded (resume)", "value": result.found_in_bucket},
        {"metric": "CSV rows", "value": outputs.csv_rows if outputs else 0},
        {"metric": "seconds", "value": round(seconds, 1)},
        {"metric": "files/s", "value": round((result.done + result.failed) / seconds, 2) if seconds > 0 else 0},
        {"metric": "bucket", "value": bucket},
    ]
    if count.rows_without_key:
        rows.append({"metric": "report rows without a complete key (ignored)", "value": count.rows_without_key})
    for reason, n in result.failures_by_kind().items():
        rows.append({"metric": f"failures: {reason}", "value": n})
    return rows


def run_failure(
    total: BatchResult,
    count: SourceCount,
    failed: int,
    failure_threshold: int,
    batch_errors: list[str],
    csv_error: str | None,
    *,
    stopped: bool,
) -> str | None:
    """Why a run failed (its Failed message, recorded as its verdict), or None: failed files within
    ``failure_threshold`` leave it ok."""
    if stopped:
        return (
            f"stopped by SIGTERM: {total.done} file(s) converted and {total.failed} failed "
            "this run are saved; a rerun resumes (CSV not rewritten)"
        )
    if batch_errors:
        return f"{len(batch_errors)} batch(es) could not be processed (CSV not rewritten): " + "; ".join(
            batch_errors[:3]
        )
    if csv_error:
        return f"the CSVs could not be written ({csv_error}); files converted: {total.done}, failed: {failed}"
    if failed > failure_threshold:
        return (
            f"{failed} failure(s), more than the threshold of {failure_threshold}: "
            + ", ".join(f"{k}={n}" for k, n in total.failures_by_kind().items())
            + (f", rows without key={count.rows_without_key}" if count.rows_without_key else "")
        )
    return None
