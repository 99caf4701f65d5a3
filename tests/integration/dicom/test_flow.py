"""Flow ``extract_dicom_reports`` against PostgreSQL, a local HTTP server and the GCS emulator."""

from __future__ import annotations

import csv
import io
import shutil

import pytest

from clinicflow.dicom.outputs import csv_object_name, failures_object_name
from clinicflow.dicom.pipeline import dicom_object_name, jpg_object_names
from clinicflow.dicom.reports import FIELD_SEPARATOR, OUTPUT_COLUMNS, FileKey
from tests.integration.dicom.conftest import BAD_FILE_KINDS, create_reports_table, sample_file

GOOD = [
    "CT_small.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "US1_J2KR.dcm",
    "eCT_Supplemental.dcm",
    "examples_ybr_color.dcm",
    "RG3_UNCI.dcm",
]
FAST = {"retry_backoff_seconds": 0.01, "download_retries": 2, "download_timeout_seconds": 10}


@pytest.fixture
def scenario(reports_db, file_server, bad_files, gcs_emulator, monkeypatch):
    """A reports table over good, bad and missing files served by HTTP; an empty emulator bucket."""
    rows = []
    for i, name in enumerate(GOOD):
        shutil.copyfile(sample_file(name), file_server.root / name)
        rows.append((f"1.2.{i % 3}", f"1.2.{i % 3}.1", f"1.2.{i % 3}.1.{i}", name, f"finding {i}", "radiologist A"))
        rows.append((f"1.2.{i % 3}", f"1.2.{i % 3}.1", f"1.2.{i % 3}.1.{i}", name, f"addendum {i}", "radiologist B"))
    for name, path in bad_files.items():
        shutil.copyfile(path, file_server.root / name)
        rows.append(("9.9", "9.9.1", f"9.9.1.{name}", name, "bad file", "radiologist A"))
    rows.append(("9.9", "9.9.1", "9.9.1.missing", "missing.dcm", "never uploaded", "radiologist A"))
    # Same study/series/instance as the first CT, another location: a distinct file.
    rows.append(("1.2.0", "1.2.0.1", "1.2.0.1.0", file_server.url("CT_small.dcm"), "re-sent", "radiologist C"))
    create_reports_table(reports_db, rows, fields=("report_text", "reader"))
    file_server.faults["JPEG2000.dcm"] = [500]  # transient, retried
    bucket = gcs_emulator.new_bucket()
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_POSTGRES_DATABASE", reports_db.database)
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_BUCKET", bucket)
    return {
        "rows": rows,
        "bucket": bucket,
        "base": file_server.base_url,
        "emulator": gcs_emulator,
        "bad": len(bad_files) + 1,
    }


def _expected_objects(rows, base: str) -> set[str]:
    names = set()
    for study, series, instance, location, *_ in rows:
        if not (location.endswith(tuple(GOOD)) and not location.startswith("9.9")) or study == "9.9":
            continue
        key = FileKey(study, series, instance, location)
        names.add(dicom_object_name("dicom-reports", key))
        names.update(jpg_object_names("dicom-reports", key, 1, all_frames=False))
    return names


def test_flow_fills_the_bucket_records_failures_and_reruns_idempotently(prefect_server, scenario, reports_db) -> None:
    from flows.dicom_reports import extract_dicom_reports

    emulator, bucket = scenario["emulator"], scenario["bucket"]
    state = extract_dicom_reports(
        bucket_kind="gcs",
        query="reports",
        base_location=scenario["base"],
        failure_threshold=scenario["bad"],
        page_size=3,
        batch_size=2,
        max_concurrency=3,
        return_state=True,
        **FAST,
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert (result["files"], result["converted"], result["failed"]) == (
        len(GOOD) + 1 + scenario["bad"],
        len(GOOD) + 1,
        scenario["bad"],
    )

    objects = emulator.objects(bucket)
    expected = _expected_objects(scenario["rows"], scenario["base"])
    assert len(expected) == 2 * (len(GOOD) + 1)
    assert set(objects) == expected | {csv_object_name("dicom-reports"), failures_object_name("dicom-reports")}

    # The CSV: one row per converted file, key order, stable columns, report fields aggregated.
    text = objects[csv_object_name("dicom-reports")].download_as_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [*OUTPUT_COLUMNS, "report_text", "reader"]
    assert len(rows) == len(GOOD) + 1
    keys = [(r["study_id"], r["series_id"], r["instance_id"], r["file_location"]) for r in rows]
    assert keys == sorted(keys)
    ct = next(r for r in rows if r["file_location"] == "CT_small.dcm")
    assert ct["report_text"] == f"addendum 0{FIELD_SEPARATOR}finding 0"
    # Position by position one report: the addendum is radiologist B's (each field sorted alone had said A's).
    assert ct["reader"] == f"radiologist B{FIELD_SEPARATOR}radiologist A"
    assert (ct["rows"], ct["columns"], ct["jpg_count"]) == ("128", "128", "1")
    assert ct["dicom_object"] in objects
    assert ct["jpg_objects"] in objects

    # Failures: PostgreSQL table and failures.csv name each bad file with stage and kind.
    conn = reports_db.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT file_location, stage, kind FROM clinicflow_dicom.failures ORDER BY 1")
        failures = {loc: (stage, kind) for loc, stage, kind in cur.fetchall()}
    conn.close()
    assert failures == {**BAD_FILE_KINDS, "missing.dcm": ("download", "http-404")}
    failures_csv = objects[failures_object_name("dicom-reports")].download_as_text()
    assert "missing.dcm,download,http-404" in failures_csv

    # Artifacts: progress at 100 %, a summary table with failures by reason.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    def this_runs(key: str) -> ArtifactFilter:
        # This run's: the shared server also holds other DICOM tests' artifacts of these keys, some of runs
        # still going on the other worker (a newest-first read once took one of those at 14 %).
        return ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
        )

    with get_client(sync_client=True) as client:
        summary = client.read_artifacts(
            artifact_filter=this_runs("dicom-dicom-reports-summary"), sort="CREATED_DESC", limit=1
        )
        progress = client.read_artifacts(
            artifact_filter=this_runs("dicom-dicom-reports-progress"), sort="CREATED_DESC", limit=1
        )
    assert progress
    assert progress[0].data == 100.0
    assert summary
    assert "failures: read/empty-file" in str(summary[0].data)

    # Rerun with no tolerance: nothing uploaded again (same generations), Failed with the count.
    generations = {name: blob.generation for name, blob in emulator.objects(bucket).items()}
    assert None not in generations.values()
    again = extract_dicom_reports(
        bucket_kind="gcs",
        query="reports",
        base_location=scenario["base"],
        failure_threshold=0,
        return_state=True,
        **FAST,
    )
    assert again.is_failed()
    assert f"{scenario['bad']} failure(s), more than the threshold of 0" in again.message
    # ... and what the run did, which a failed run did not say (nothing converted again: done before, or failed).
    assert "file(s): 0 converted, " in again.message
    assert f"already done, {scenario['bad']} failed; outputs in gs://" in again.message
    assert {n: b.generation for n, b in emulator.objects(bucket).items()} == generations


def test_bad_query_fails_the_flow_with_a_clear_message(prefect_server, reports_db, monkeypatch, tmp_path) -> None:
    from flows.dicom_reports import extract_dicom_reports

    create_reports_table(reports_db, [("s", "se", "i", "a.dcm", "t")])
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_POSTGRES_DATABASE", reports_db.database)
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_PATH", str(tmp_path / "bucket"))
    state = extract_dicom_reports(query="SELECT study_id FROM reports", return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="lacks key column"):
        state.result()
    with pytest.raises(ValueError, match="page_size must be at least 1"):
        extract_dicom_reports(query="reports", page_size=0)


def test_a_failed_csv_write_still_publishes_the_summary_and_failures(
    prefect_server, reports_db, file_server, bad_files, monkeypatch, tmp_path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.dicom_reports import extract_dicom_reports

    shutil.copyfile(sample_file("CT_small.dcm"), file_server.root / "ct.dcm")
    shutil.copyfile(bad_files["empty.dcm"], file_server.root / "empty.dcm")
    create_reports_table(reports_db, [("s", "se", "i1", "ct.dcm", "fine"), ("s", "se", "i2", "empty.dcm", "bad")])
    bucket = tmp_path / "bucket"
    # reports.csv cannot be written: a folder holds its name.
    (bucket / "csvfail" / "reports.csv").mkdir(parents=True)
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_POSTGRES_DATABASE", reports_db.database)
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_PATH", str(bucket))
    state = extract_dicom_reports(
        query="reports",
        dataset="csvfail",
        base_location=file_server.base_url,
        failure_threshold=5,
        return_state=True,
        **FAST,
    )
    assert state.is_failed()
    assert "the CSVs could not be written" in state.message
    assert (bucket / failures_object_name("csvfail")).read_text().count("empty.dcm") == 1
    with get_client(sync_client=True) as client:
        found = {
            a.key
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["dicom-csvfail-summary", "dicom-csvfail-failures"])
                )
            )
        }
    assert found == {"dicom-csvfail-summary", "dicom-csvfail-failures"}
