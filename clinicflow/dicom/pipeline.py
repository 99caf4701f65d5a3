"""One batch of files end to end: skip done → download → convert → upload → record.

Plain functions (no Prefect): ``tasks/dicom.py`` wraps :func:`process_batch`
and tests call it directly.

Per file, in order: the file is downloaded and converted in a temporary
directory; it is marked ``uploading`` in PostgreSQL with its planned object
names; its DICOM and JPEG objects are uploaded one by one, each logged in the
upload log right after it lands; then the file is marked ``done`` with its CSV
row. A file that was ``uploading`` or failed during upload in an earlier run
skips objects the upload log already has and, for the few objects a kill may
have left unlogged, asks the bucket whether they are there. So a rerun after a
kill at any point uploads every object exactly once.

Object names are deterministic functions of the file key::

    <dataset>/dicom/<study>/<series>/<instance>_<keyhash>.dcm
    <dataset>/jpg/<study>/<series>/<instance>_<keyhash>.jpg        (or _f0001.jpg ... per frame)

``keyhash`` hashes the whole key, so two files sharing a SOP Instance UID (or
whose ids differ only in characters not allowed in names) never collide.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinicflow.connectors.objectstore.stores import ObjectStore, file_md5
from clinicflow.core import cancel
from clinicflow.core.errors import one_line
from clinicflow.core.logs import get_logger
from clinicflow.dicom.dataset import ConversionError
from clinicflow.dicom.download import Downloader, DownloadError, DownloadLimits, stored_location
from clinicflow.dicom.render import DEFAULT_JPEG_QUALITY, RenderResult, jpeg_names, render_file
from clinicflow.dicom.reports import KEY_COLUMNS, FileGroup, FileKey, ReportsSource, SourceCount
from clinicflow.dicom.state import Failure, FileState, StateStore

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BatchSettings:
    dataset: str
    run_id: str
    base_location: str | None = None
    # Also the allowed roots of local files and the redirect rule.
    limits: DownloadLimits = field(default_factory=DownloadLimits)
    all_frames: bool = False
    jpeg_quality: int = DEFAULT_JPEG_QUALITY


# A run's result keeps failure counts for every file but failure details for
# only this many (all of them are in PostgreSQL and failures.csv): memory stays
# bounded however many files fail.
MAX_FAILURES_KEPT = 500


@dataclass
class BatchResult:
    files: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    bytes: int = 0
    jpgs: int = 0
    uploaded: int = 0
    found_in_bucket: int = 0
    failures: list[Failure] = field(default_factory=list)
    failure_counts: Counter[str] = field(default_factory=Counter)
    cancelled: bool = False  # a stop request (SIGTERM) ended the batch early; the rest is left for a rerun

    def add_failure(self, failure: Failure) -> None:
        self.failed += 1
        self.failure_counts[f"{failure.stage}/{failure.kind}"] += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(failure)

    def add(self, other: BatchResult) -> None:
        for name in ("files", "skipped", "done", "bytes", "jpgs", "uploaded", "found_in_bucket", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failure_counts.update(other.failure_counts)
        self.cancelled = self.cancelled or other.cancelled
        self.failures.extend(other.failures[: max(0, MAX_FAILURES_KEPT - len(self.failures))])

    def failures_by_kind(self) -> dict[str, int]:
        return dict(sorted(self.failure_counts.items()))


def safe_segment(value: str) -> str:
    """An id made safe for an object name segment (the key hash keeps names unique)."""
    cleaned = _UNSAFE.sub("_", value).strip("._") or "_"
    return cleaned[:96]


def object_stem(dataset: str, kind: str, key: FileKey) -> str:
    return (
        f"{dataset}/{kind}/{safe_segment(key.study_id)}/{safe_segment(key.series_id)}/"
        f"{safe_segment(key.instance_id)}_{key.digest()}"
    )


def dicom_object_name(dataset: str, key: FileKey) -> str:
    return object_stem(dataset, "dicom", key) + ".dcm"


def jpg_object_names(dataset: str, key: FileKey, frames: int, *, all_frames: bool) -> list[str]:
    stem = object_stem(dataset, "jpg", key)
    directory, base = stem.rsplit("/", 1)
    return [f"{directory}/{name}" for name in jpeg_names(base, frames, all_frames=all_frames)]


def csv_row(group: FileGroup, dicom_name: str, jpg_names: list[str], render: RenderResult) -> dict[str, Any]:
    info = render.info
    row: dict[str, Any] = dict(zip(KEY_COLUMNS, group.key.as_tuple(), strict=False))
    row["file_location"] = stored_location(group.key.file_location)  # no credentials in the CSV
    row.update(
        {
            "dicom_object": dicom_name,
            "jpg_objects": ";".join(jpg_names),
            "jpg_count": len(jpg_names),
            "frames": info.frames,
            "rows": info.rows,
            "columns": info.columns,
            "photometric": info.photometric,
            "transfer_syntax": info.transfer_syntax,
            "sop_instance_uid": info.sop_instance_uid,
        }
    )
    row.update(group.fields)
    return row


def prepare_run(source: ReportsSource, state: StateStore, run_id: str) -> tuple[SourceCount, list[str]]:
    """Before the first page: state tables exist, the query is valid, and how much there is to do."""
    state.ensure_schema()
    fields = source.report_fields()
    count = source.count()
    if count.rows_without_key:
        state.record_source_failure(
            "source",
            "missing-key",
            f"{count.rows_without_key} report row(s) have an empty study_id, series_id, instance_id or "
            "file_location and were skipped",
            run_id,
        )
    return count, fields


def process_batch(
    files: list[FileGroup],
    settings: BatchSettings,
    state: StateStore,
    writer: ObjectStore,
) -> BatchResult:
    """Process one batch; returns counts and failures (already recorded in PostgreSQL).

    Bad files never stop the batch. Errors of the state database propagate
    (the task is retried as a whole; done files are then skipped). A stop
    request (:mod:`clinicflow.core.cancel`) ends the batch between files or inside
    a download; the file in hand is neither done nor failed, so a rerun takes it.
    """
    log = get_logger("clinicflow.dicom")
    result = BatchResult(files=len(files))
    known = state.touch([g.key for g in files], settings.run_id)
    refreshed: list[tuple[FileKey, dict[str, Any]]] = []
    todo: list[tuple[FileGroup, FileState | None]] = []
    for group in files:
        previous = known.get(group.key)
        if previous is not None and previous.status == "done":
            result.skipped += 1
            stored = previous.csv_row or {}
            if any(stored.get(k) != v for k, v in group.fields.items()):
                refreshed.append((group.key, {**stored, **group.fields}))
            continue
        todo.append((group, previous))
    state.refresh_fields(refreshed)

    with (
        tempfile.TemporaryDirectory(prefix="clinicflow-dicom-") as tmp,
        Downloader(settings.limits, settings.base_location) as downloader,
    ):
        for index, (group, previous) in enumerate(todo):
            if cancel.requested():
                result.cancelled = True
                break
            work = Path(tmp) / str(index)
            work.mkdir()
            try:
                failure = _process_file(group, previous, work, settings, state, writer, downloader, result)
            except cancel.RunCancelled:
                result.cancelled = True
                break
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if failure is not None:
                log.warning("DICOM %s failed at %s: %s", group.key.label(), failure.stage, failure.reason)
                state.record_failures([failure], settings.run_id)
                result.add_failure(failure)
    return result


def _process_file(
    group: FileGroup,
    previous: FileState | None,
    work: Path,
    settings: BatchSettings,
    state: StateStore,
    writer: ObjectStore,
    downloader: Downloader,
    result: BatchResult,
) -> Failure | None:
    key = group.key
    try:
        local = downloader.fetch(key.file_location, work / "source.dcm", what=key.label())
    except DownloadError as exc:
        return Failure(key, "download", exc.kind, exc.reason)
    try:
        render = render_file(local, work, "frame", all_frames=settings.all_frames, quality=settings.jpeg_quality)
    except ConversionError as exc:
        return Failure(key, exc.stage, exc.kind, exc.reason)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unanticipated decoder error fails this file alone
        # A file malformed in a way no check in render anticipated (pydicom and its plugins raise
        # many types, struct.error included): it fails alone, the batch goes on.
        return Failure(key, "decode", "unexpected-error", one_line(exc, limit=200))

    dicom_name = dicom_object_name(settings.dataset, key)
    jpg_names = jpg_object_names(settings.dataset, key, render.info.frames, all_frames=settings.all_frames)
    uploads = [(local, dicom_name), *zip(render.jpeg_paths, jpg_names, strict=False)]
    names = [name for _, name in uploads]

    state.claim({key: names}, settings.run_id)
    # Only a file touched by an earlier run can have objects in the bucket already.
    logged = state.uploaded_objects(names) if previous is not None else set()
    may_be_unlogged = previous is not None and previous.status == "uploading"
    try:
        for path, name in uploads:
            if name in logged:
                continue
            size = path.stat().st_size
            md5 = file_md5(path)
            if may_be_unlogged and writer.exists(name):
                state.record_upload(name, size, md5, uploaded=False)
                result.found_in_bucket += 1
                continue
            writer.write(name, path)
            state.record_upload(name, size, md5)
            result.uploaded += 1
    except Exception as exc:  # one file's upload failure must not stop the batch
        if _is_state_error(exc):
            raise
        return Failure(key, "upload", "upload-error", one_line(exc, limit=200))

    state.mark_done(
        [(key, names, csv_row(group, dicom_name, jpg_names, render), local.stat().st_size, len(jpg_names))],
        settings.run_id,
    )
    result.done += 1
    result.bytes += local.stat().st_size
    result.jpgs += len(jpg_names)
    return None


def _is_state_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("psycopg2")
