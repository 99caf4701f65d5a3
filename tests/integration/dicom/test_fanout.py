"""DICOM fan-out: key ranges of whole files, and two range children running at once equal one in-pod run."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clinicflow.dicom.partitions import plan_key_ranges
from clinicflow.dicom.reports import ReportsSource
from clinicflow.dicom.state import csv_text_rows
from clinicflow.scaleout import fanout
from tests.integration.dicom.conftest import create_reports_table, sample_file

GOOD = ["CT_small.dcm", "MR_small.dcm", "SC_rgb_rle.dcm", "emri_small.dcm", "JPEG2000.dcm", "US1_J2KR.dcm"]
FAST = {"retry_backoff_seconds": 0.01, "download_retries": 1, "download_timeout_seconds": 10}


def _all_keys(source: ReportsSource) -> list[tuple]:
    keys = []
    for page in source.pages(3):
        keys += [(g.key.as_tuple(), g.report_rows) for g in page.files]
    return keys


def test_key_ranges_cover_every_file_once_and_never_split_one(reports_db) -> None:
    # 7 files, 1 to 3 report rows each, inserted out of key order.
    rows = []
    for i in (5, 2, 6, 0, 3, 1, 4):
        rows += [(f"s{i % 2}", f"se{i % 3}", f"i{i}", f"f{i}.dcm", f"report {j}") for j in range(1 + i % 3)]
    create_reports_table(reports_db, rows)
    whole = ReportsSource(reports_db, "reports")
    everything = _all_keys(whole)
    assert len(everything) == 7
    for partitions in (1, 2, 3, 7, 20):
        ranges = plan_key_ranges(whole, whole.count().files, partitions)
        assert len(ranges) == min(partitions, 7)
        assert ranges[0].low is None
        assert ranges[-1].high is None
        found = []
        for key_range in ranges:
            part = _all_keys(ReportsSource(reports_db, "reports", key_range.low, key_range.high))
            assert part, f"empty range {key_range} with {partitions} partitions"
            assert ReportsSource(reports_db, "reports", key_range.low, key_range.high).count().files == len(part)
            found += part
        # Every file once, with all its report rows (a file is never split across ranges).
        assert found == everything


def test_empty_source_has_no_ranges(reports_db) -> None:
    create_reports_table(reports_db, [])
    source = ReportsSource(reports_db, "reports")
    assert plan_key_ranges(source, source.count().files, 4) == []


def _bucket_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _upload_counts(server, schema: str) -> list[int]:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT upload_count FROM {schema}.uploads")
            return [int(n) for (n,) in cur.fetchall()]
    finally:
        conn.close()


def test_two_ranges_at_once_equal_one_in_pod_run(
    prefect_server, reports_db, file_server, bad_files, monkeypatch, tmp_path
) -> None:
    import flows.dicom_reports as dicom_flow
    from flows.dicom_reports import dicom_reports_range, extract_dicom_reports

    rows = []
    for i, name in enumerate(GOOD):
        shutil.copyfile(sample_file(name), file_server.root / name)
        rows += [
            (f"1.{i % 2}", "1.1", f"1.1.{i}", name, f"finding {i}"),
            (f"1.{i % 2}", "1.1", f"1.1.{i}", name, f"addendum {i}"),
        ]
    shutil.copyfile(bad_files["empty.dcm"], file_server.root / "empty.dcm")
    rows.append(("1.0", "1.1", "1.1.9", "empty.dcm", "bad file"))
    create_reports_table(reports_db, rows)
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_POSTGRES_DATABASE", reports_db.database)
    common = {
        "query": "reports",
        "base_location": file_server.base_url,
        "failure_threshold": 1,
        "page_size": 2,
        "batch_size": 1,
        "max_concurrency": 2,
        **FAST,
    }

    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_PATH", str(tmp_path / "in-pod"))
    in_pod = extract_dicom_reports(state_schema="cf_dicom_in_pod", return_state=True, **common)
    assert in_pod.is_completed(), in_pod.message

    started: list[dict] = []

    def children_in_threads(deployment, run_key, partitions, *, width):
        """Stands in for the work pool: every child run at the same time, in this process."""
        started.append(partitions)
        together = threading.Barrier(len(partitions))

        def child(name: str):
            together.wait(timeout=120)
            state = dicom_reports_range(**partitions[name], return_state=True)
            return fanout.ChildRun(
                name, 0, str(state.state_details.flow_run_id), state.type.value, state.name, state.message or ""
            )

        with ThreadPoolExecutor(len(partitions)) as pool:
            return {c.partition: c for c in pool.map(child, list(partitions))}

    monkeypatch.setattr(dicom_flow, "run_partitions", children_in_threads)
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_PATH", str(tmp_path / "fanout"))
    fanned = extract_dicom_reports(
        state_schema="cf_dicom_fanout", mode="fanout", partitions=2, return_state=True, **common
    )
    assert fanned.is_completed(), fanned.message

    assert len(started) == 1
    assert len(started[0]) == 2
    lows_highs = [p["key_range"] for p in started[0].values()]
    assert lows_highs[0][0] is None
    assert lows_highs[-1][1] is None
    assert lows_highs[0][1] == lows_highs[1][0]
    assert {p["run_id"] for p in started[0].values()} == {str(fanned.state_details.flow_run_id)}

    # Same objects, byte for byte (DICOMs, JPGs, reports.csv, failures.csv), each uploaded once.
    in_pod_files, fanned_files = _bucket_files(tmp_path / "in-pod"), _bucket_files(tmp_path / "fanout")
    assert sorted(fanned_files) == sorted(in_pod_files)
    assert fanned_files == in_pod_files
    assert len(in_pod_files) == 2 * len(GOOD) + 2
    csv_rows = list(csv_text_rows(in_pod_files["dicom-reports/reports.csv"].decode()))
    assert len(csv_rows) == 1 + len(GOOD)
    assert b"empty.dcm" in fanned_files["dicom-reports/failures.csv"]
    counts = _upload_counts(reports_db, "cf_dicom_fanout")
    assert len(counts) == len(fanned_files)
    assert set(counts) == {1}

    in_pod_result, fanned_result = in_pod.result(), fanned.result()
    for field in ("files", "converted", "failed", "jpgs", "bytes", "csv_rows", "csv_object"):
        assert fanned_result[field] == in_pod_result[field], field
