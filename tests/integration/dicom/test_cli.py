"""``clinicflow dicom demo|status|reset`` on the local PostgreSQL and a local-folder bucket."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from typer.testing import CliRunner

from clinicflow.cli import app
from clinicflow_dev.dicom_demo import DEMO_FILES


def test_demo_runs_twice_idempotently_and_status_shows_it(
    prefect_server, make_pg_db, monkeypatch, tmp_path: Path
) -> None:
    database = make_pg_db("dicomdemo").database
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_POSTGRES_DATABASE", database)
    bucket = tmp_path / "bucket"
    runner = CliRunner()
    args = ["dicom", "demo", "--files-dir", str(tmp_path / "files"), "--bucket-path", str(bucket)]

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    good = sum(1 for f in DEMO_FILES if not f.expected_failure) + 1  # + the re-sent copy of the CT
    reports = list(csv.DictReader(io.StringIO((bucket / "dicom-reports" / "reports.csv").read_text())))
    assert len(reports) == good
    assert len(list((bucket / "dicom-reports" / "jpg").rglob("*.jpg"))) == good
    failures = list(csv.DictReader(io.StringIO((bucket / "dicom-reports" / "failures.csv").read_text())))
    assert sorted(f"{r['stage']}/{r['kind']}" for r in failures) == sorted(
        f.expected_failure for f in DEMO_FILES if f.expected_failure
    )

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "skipped" in second.output
    assert f"{good}" in second.output

    status = runner.invoke(app, ["dicom", "status"])
    assert status.exit_code == 0, status.output
    assert "objects uploaded more than once" in status.output
    assert status.output.split("objects uploaded more than once")[1].split()[1] == "0"
    # A dataset nothing is recorded for (a typo) is said, not shown as zeros with exit 0.
    unknown = runner.invoke(app, ["dicom", "status", "--dataset", "dicom-reprots"])
    assert unknown.exit_code == 2
    assert "nothing recorded for DICOM dataset 'dicom-reprots'" in unknown.output

    # The demo's bad files are within its threshold: the run is ok, and `clinicflow status` says so (exit 0).
    overall = runner.invoke(app, ["status", "--json", "--subsystem", "dicom"])
    assert overall.exit_code == 0, overall.output
    latest = json.loads(overall.output)["subsystems"]["dicom"]["runs"][0]
    assert (latest["verdict"], latest["failures"]) == ("ok", len(failures))
    # The same files with a threshold of 0: the run fails, and status names it with the flow's reason.
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_PATH", str(bucket))
    roots = ["--allowed-root", str((tmp_path / "files").resolve())]
    strict = runner.invoke(app, ["dicom", "run", *roots, "--failure-threshold", "0"])
    assert strict.exit_code == 1, strict.output
    overall = runner.invoke(app, ["status", "--json", "--subsystem", "dicom"])
    assert overall.exit_code == 1, overall.output
    latest = json.loads(overall.output)["subsystems"]["dicom"]["runs"][0]
    assert latest["verdict"] == "failed"
    assert latest["message"].startswith(f"{len(failures)} failure(s), more than the threshold of 0")

    reset = runner.invoke(app, ["dicom", "reset", "--dataset", "dicom-reports", "--yes"])
    assert reset.exit_code == 0
    assert "forgotten" in reset.output


def test_run_exits_non_zero_when_the_flow_fails(prefect_server, make_pg_db, monkeypatch, tmp_path: Path) -> None:
    database = make_pg_db("dicomcli").database
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_POSTGRES_DATABASE", database)
    monkeypatch.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_PATH", str(tmp_path / "bucket"))
    result = CliRunner().invoke(app, ["dicom", "run", "--query", "no_such_view"])
    assert result.exit_code != 0
    assert "no_such_view" in str(result.output) + str(result.exception)
