"""One batch end to end without Prefect: real PostgreSQL state, real HTTP server, real GCS emulator."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from clinicflow.connectors.objectstore.clients import store_for_block
from clinicflow.connectors.objectstore.stores import LocalStore
from clinicflow.core.retry import RetryPolicy
from clinicflow.dicom.download import DownloadLimits
from clinicflow.dicom.outputs import csv_object_name, write_outputs
from clinicflow.dicom.pipeline import BatchSettings, dicom_object_name, jpg_object_names, process_batch
from clinicflow.dicom.reports import FileGroup, FileKey
from clinicflow.dicom.state import StateStore
from tests.integration.dicom.conftest import BAD_FILE_KINDS, PYDICOM_DATA, PYDICOM_DATA_EXTRA, sample_file

FAST = DownloadLimits(retry=RetryPolicy(2, 0.01), timeout_seconds=5)


def _group(name: str, location: str, text: str = "report", instance: str | None = None) -> FileGroup:
    return FileGroup(FileKey("study1", "series1", instance or name, location), {"report_text": text}, 1)


@pytest.fixture
def store(reports_db):
    with StateStore(reports_db, "ds") as state:
        state.ensure_schema()
        yield state


# Local test files live in pydicom's package folders and under the temporary directory: the allowed roots.
LOCAL_ROOTS = tuple(str(p) for p in (PYDICOM_DATA, PYDICOM_DATA_EXTRA, Path(tempfile.gettempdir())) if p)


def _settings(run_id: str, **kwargs) -> BatchSettings:
    return BatchSettings(dataset="ds", run_id=run_id, limits=replace(FAST, allowed_roots=LOCAL_ROOTS), **kwargs)


def test_batch_uploads_good_files_records_bad_ones_and_reruns_upload_nothing(
    store, file_server, bad_files, tmp_path: Path
) -> None:
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "emri_small.dcm"):
        shutil.copyfile(sample_file(name), file_server.root / name)
    for name, path in bad_files.items():
        shutil.copyfile(path, file_server.root / name)
    file_server.faults["MR_small_RLE.dcm"] = [503]  # transient: retried inside the batch
    good = [_group(n, file_server.url(n)) for n in ("CT_small.dcm", "MR_small_RLE.dcm", "emri_small.dcm")]
    # Same study/series/instance as CT_small but another file: a distinct key, distinct objects.
    good.append(_group("CT_small.dcm", file_server.url("CT_small.dcm") + "?copy=2", instance="CT_small.dcm"))
    bad = [_group(n, file_server.url(n)) for n in sorted(bad_files)]
    missing = _group("missing", file_server.url("missing.dcm"))
    writer = LocalStore(tmp_path / "bucket")

    result = process_batch(good + bad + [missing], _settings("run-1", all_frames=True), store, writer)

    assert (result.done, result.failed, result.skipped) == (4, len(bad_files) + 1, 0)
    assert result.jpgs == 3 + 10  # emri_small has 10 frames, one JPG each
    failures = {f.key.instance_id: (f.stage, f.kind) for f in result.failures}
    assert failures == {**{n: BAD_FILE_KINDS[n] for n in bad_files}, "missing": ("download", "http-404")}
    assert file_server.requests["missing.dcm"] == 1  # 404 is not retried
    assert file_server.requests["MR_small_RLE.dcm"] == 2

    expected = set()
    for g in good:
        frames = 10 if g.key.instance_id == "emri_small.dcm" else 1
        expected.add(dicom_object_name("ds", g.key))
        expected.update(jpg_object_names("ds", g.key, frames, all_frames=True))
    assert {info.key for info in writer.list()} == expected
    assert len(expected) == 4 + 13
    uploads = store.upload_counts()
    assert set(uploads) == expected
    assert set(uploads.values()) == {1}
    assert store.status_counts() == {"done": 4, "failed": len(bad_files) + 1}
    # No JPG for any bad file.
    assert not any(g.key.digest() in name for g in [*bad, missing] for name in expected)

    # Rerun: done files skipped, failed ones retried (and fail again), nothing re-uploaded.
    again = process_batch(good + bad + [missing], _settings("run-2", all_frames=True), store, writer)
    assert (again.done, again.skipped, again.failed, again.uploaded) == (0, 4, len(bad_files) + 1, 0)
    assert store.upload_counts() == uploads


def test_failures_table_holds_key_stage_kind_reason(store, reports_db, bad_files) -> None:
    groups = [_group(n, str(p)) for n, p in sorted(bad_files.items())]
    process_batch(groups, _settings("run-f"), store, LocalStore(bad_files["empty.dcm"].parent / "out"))
    conn = reports_db.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT instance_id, stage, kind, reason, run_id FROM clinicflow_dicom.failures ORDER BY 1")
        rows = cur.fetchall()
    conn.close()
    assert [(r[0], r[1], r[2]) for r in rows] == [(n, *BAD_FILE_KINDS[n]) for n in sorted(bad_files)]
    assert all(r[3] and r[4] == "run-f" for r in rows)


def test_kill_between_upload_and_log_does_not_upload_again(store, gcs_emulator, monkeypatch, tmp_path: Path) -> None:
    """The one crash window no log can close: the object landed, the process died before logging it."""
    from blocks.buckets import resolve_bucket

    bucket = gcs_emulator.new_bucket()
    monkeypatch.setenv("CLINICFLOW_CRASH_BUCKET_BUCKET", bucket)
    writer = store_for_block(resolve_bucket("gcs", "crash-bucket"))
    group = _group("CT_small.dcm", str(sample_file("CT_small.dcm")))
    dicom_name = dicom_object_name("ds", group.key)
    jpg_name = jpg_object_names("ds", group.key, 1, all_frames=False)[0]
    # What the killed run left behind: claimed, DICOM uploaded, nothing logged.
    store.claim({group.key: [dicom_name, jpg_name]}, "killed-run")
    writer.write(dicom_name, sample_file("CT_small.dcm"))
    generation = gcs_emulator.objects(bucket)[dicom_name].generation

    result = process_batch([group], _settings("resumed-run"), store, writer)

    assert (result.done, result.found_in_bucket, result.uploaded) == (1, 1, 1)
    objects = gcs_emulator.objects(bucket)
    assert set(objects) == {dicom_name, jpg_name}
    assert objects[dicom_name].generation == generation  # not uploaded a second time
    assert store.upload_counts() == {dicom_name: 0, jpg_name: 1}  # 0: found in the bucket, not sent by us


def test_changed_report_fields_refresh_the_csv_without_downloading_again(store, file_server, tmp_path: Path) -> None:
    shutil.copyfile(sample_file("CT_small.dcm"), file_server.root / "ct.dcm")
    writer = LocalStore(tmp_path / "bucket")
    process_batch([_group("ct", file_server.url("ct.dcm"), "first text")], _settings("r1"), store, writer)
    process_batch([_group("ct", file_server.url("ct.dcm"), "corrected text")], _settings("r2"), store, writer)
    assert file_server.requests["ct.dcm"] == 1
    outputs = write_outputs(store, writer, ["report_text"], "r2")
    assert outputs.csv_rows == 1
    csv_text = (tmp_path / "bucket" / csv_object_name("ds")).read_text()
    assert "corrected text" in csv_text
    assert "first text" not in csv_text


def test_upload_failure_is_recorded_and_a_rerun_finishes_without_duplicates(
    store, gcs_emulator, monkeypatch, tmp_path: Path
) -> None:
    from blocks.buckets import resolve_bucket

    monkeypatch.setenv("CLINICFLOW_LATE_BUCKET_BUCKET", "cf-not-created-yet")
    writer = store_for_block(resolve_bucket("gcs", "late-bucket"))
    group = _group("CT_small.dcm", str(sample_file("CT_small.dcm")))
    first = process_batch([group], _settings("r1"), store, writer)
    assert [(f.stage, f.kind) for f in first.failures] == [("upload", "upload-error")]
    assert store.status_counts() == {"failed": 1}

    gcs_emulator.client().create_bucket("cf-not-created-yet")
    second = process_batch([group], _settings("r2"), store, writer)
    assert (second.done, second.uploaded) == (1, 2)
    assert set(store.upload_counts().values()) == {1}


def test_one_run_per_dataset_at_a_time(reports_db) -> None:
    from clinicflow.dicom.state import DatasetBusyError

    with StateStore(reports_db, "ds") as first, StateStore(reports_db, "ds") as second:
        with first.run_lock():
            with pytest.raises(DatasetBusyError, match="another run of dataset 'ds'"), second.run_lock():
                pass
            with StateStore(reports_db, "other-dataset").run_lock():
                pass  # other datasets are independent
        with second.run_lock():
            pass  # released with the first run's connection


def test_a_file_breaking_the_converter_in_an_unforeseen_way_fails_alone(store, tmp_path: Path) -> None:
    import struct

    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    # A Modality LUT whose descriptor promises 4096 entries but holds 3: pydicom's LUT code
    # raises struct.error, which no check in render anticipates.
    ds = pydicom.dcmread(sample_file("MR_small.dcm"))
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.add_new(0x00283006, "OW", struct.pack("<3H", 1, 2, 3))
    lut.ModalityLUTType = "HU"
    ds.ModalityLUTSequence = Sequence([lut])
    weird = tmp_path / "weird.dcm"
    ds.save_as(weird)
    good = _group("good", str(sample_file("CT_small.dcm")))
    result = process_batch([_group("weird", str(weird)), good], _settings("r"), store, LocalStore(tmp_path / "bucket"))
    assert result.done == 1
    assert result.failed == 1
    assert (result.failures[0].stage, result.failures[0].kind) == ("decode", "unexpected-error")
    assert "error" in result.failures[0].reason


def test_credentials_and_query_strings_never_reach_the_state_tables_or_the_csvs(
    store, reports_db, file_server, tmp_path: Path
) -> None:
    shutil.copyfile(sample_file("CT_small.dcm"), file_server.root / "ct.dcm")
    secret = "fake-sentinel-not-a-credential-7"
    good = _group("ct", f"http://reader:{secret}@127.0.0.1:{file_server.port}/ct.dcm?sig={secret}")
    bad = _group("gone", f"http://127.0.0.1:{file_server.port}/gone.dcm?X-Amz-Signature={secret}")
    writer = LocalStore(tmp_path / "bucket")
    for run in ("r1", "r2"):  # the second run must find the first one's rows by the same (stored) key
        result = process_batch([good, bad], _settings(run), store, writer)
    assert (result.done, result.skipped, result.failed) == (0, 1, 1)
    assert file_server.requests["ct.dcm"] == 1
    outputs = write_outputs(store, writer, ["report_text"], "r2")
    assert outputs.csv_rows == 1
    assert outputs.failures_rows == 1

    conn = reports_db.connect()
    with conn.cursor() as cur:
        dumped = []
        for table in ("files", "failures", "uploads"):
            cur.execute(f"SELECT * FROM clinicflow_dicom.{table}")
            dumped.append(repr(cur.fetchall()))
    conn.close()
    texts = [*dumped, *(p.read_text() for p in (tmp_path / "bucket").rglob("*.csv"))]
    assert len(texts) == 5
    for text in texts:
        assert secret not in text
        assert "reader:" not in text
    csv_text = (tmp_path / "bucket" / csv_object_name("ds")).read_text()
    assert f"http://127.0.0.1:{file_server.port}/ct.dcm#sha256=" in csv_text


def test_a_stop_request_ends_the_batch_and_leaves_the_rest_for_a_rerun(store, file_server, tmp_path: Path) -> None:
    from clinicflow.core import cancel

    for name in ("a.dcm", "b.dcm"):
        shutil.copyfile(sample_file("CT_small.dcm"), file_server.root / name)
    groups = [_group(n, file_server.url(n)) for n in ("a.dcm", "b.dcm")]
    writer = LocalStore(tmp_path / "bucket")
    cancel.request_stop()
    try:
        stopped = process_batch(groups, _settings("r1"), store, writer)
    finally:
        cancel.clear()
    assert stopped.cancelled
    assert (stopped.done, stopped.failed) == (0, 0)
    assert sum(file_server.requests.values()) == 0
    resumed = process_batch(groups, _settings("r2"), store, writer)
    assert not resumed.cancelled
    assert resumed.done == 2


def test_a_trickling_download_is_recorded_as_download_timeout(store, reports_db, file_server, tmp_path: Path) -> None:
    import time

    shutil.copyfile(sample_file("CT_small.dcm"), file_server.root / "slow.dcm")
    file_server.faults["slow.dcm"] = ["trickle"]
    settings = BatchSettings(dataset="ds", run_id="r", limits=DownloadLimits(retry=RetryPolicy(0), timeout_seconds=2.0))
    started = time.monotonic()
    result = process_batch(
        [_group("slow", file_server.url("slow.dcm"))], settings, store, LocalStore(tmp_path / "bucket")
    )
    assert time.monotonic() - started < 2.0 + 2.0
    assert result.failures_by_kind() == {"download/timeout": 1}
    conn = reports_db.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT stage, kind FROM clinicflow_dicom.failures")
        assert cur.fetchall() == [("download", "timeout")]
    conn.close()
