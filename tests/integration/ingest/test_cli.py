"""``clinicflow ingest demo|run`` and ``clinicflow dlq list|show|replay|discard`` on the local PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from clinicflow.cli import app
from clinicflow_dev.ingest_demo import demo_files
from tests.integration.ingest.conftest import pg_rows


def test_demo_then_dead_letter_commands(
    prefect_server: None, make_pg_db: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    server = make_pg_db("ingestdemo")
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_DATABASE", server.database)
    runner = CliRunner()
    demo = runner.invoke(app, ["ingest", "demo", "--files-dir", str(tmp_path / "files")])
    assert demo.exit_code == 0, demo.output
    files = demo_files()
    assert pg_rows(server, "SELECT count(*) FROM ingest.documents") == [(len(files),)]
    # Every document with a patient id is extracted, the scan by OCR and the PDF from its text layer;
    # the phone note is not a clinical document: a letter.
    assert pg_rows(server, "SELECT count(*) FROM ingest.medical") == [(len(files) - 1,)]
    assert pg_rows(
        server,
        "SELECT mime_sniffed, is_binary, text_method, page_count FROM ingest.documents "
        "WHERE uri LIKE '%%.png' OR uri LIKE '%%.pdf' ORDER BY 1",
    ) == [("application/pdf", True, "native", 1), ("image/png", True, "ocr", 1)]
    assert pg_rows(
        server,
        "SELECT m.patient_id, m.diagnosis_codes FROM ingest.medical m JOIN ingest.documents d "
        "ON d.id = m.document_id WHERE d.uri LIKE '%%.png'",
    ) == [("DEMO0004", ["G47.33"])]
    assert pg_rows(server, "SELECT mime_sniffed, mime_by_extension FROM ingest.documents WHERE uri LIKE '%%.hl7'") == [
        ("x-application/hl7-v2+er7", "x-application/hl7-v2+er7")
    ]
    again = runner.invoke(app, ["ingest", "demo", "--files-dir", str(tmp_path / "files")])
    assert again.exit_code == 0, again.output
    assert pg_rows(server, "SELECT count(*) FROM ingest.documents") == [(len(files),)]

    listed = runner.invoke(app, ["dlq", "list"])
    assert listed.exit_code == 0, listed.output
    assert "not-clinical" in listed.output
    assert "extract" in listed.output
    # Not a terminal: a line a letter, its uri whole (a folded table cut paths over lines).
    (line,) = [row for row in listed.output.splitlines() if "not-clinical" in row and "\t" in row]
    assert line.split("\t")[2].startswith("file://")
    assert line.split("\t")[2].endswith(".txt")
    (letter_id,) = pg_rows(server, "SELECT id FROM ingest.dead_letters WHERE status = 'open'")[0]
    shown = runner.invoke(app, ["dlq", "show", str(letter_id)])
    assert shown.exit_code == 0
    assert "not-clinical" in shown.output
    assert "Phone note" not in shown.output
    assert runner.invoke(app, ["dlq", "show", "999999"]).exit_code == 1

    # The note is still not clinical: the replay fails again (exit 1), attempts grow, nothing duplicated.
    # (The second demo run skipped the unchanged note: its extraction is retried by replays, not reruns.)
    replayed = runner.invoke(app, ["dlq", "replay", str(letter_id)])
    assert replayed.exit_code == 1, replayed.output
    assert f"letter {letter_id}: extract/not-clinical: no patient identifier" in " ".join(replayed.output.split())
    assert pg_rows(server, "SELECT status, attempts FROM ingest.dead_letters") == [("open", 2)]
    discarded = runner.invoke(app, ["dlq", "discard", str(letter_id)])
    assert discarded.exit_code == 0, discarded.output
    assert pg_rows(server, "SELECT status FROM ingest.dead_letters") == [("discarded",)]
    assert runner.invoke(app, ["dlq", "replay"]).exit_code == 0  # nothing open: nothing to do

    bad = runner.invoke(app, ["ingest", "run", "ftp://nowhere/x"])
    assert bad.exit_code != 0
