"""A real clinical inbox on a first run: everything readable staged, letters that replay, links kept in the root,
replays by the letter's own extractor, re-extraction with another extractor and back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clinicflow.connectors.objectstore.patterns import parse_location
from clinicflow.connectors.objectstore.stores import LocalStore, matching_objects
from clinicflow.core.retry import RetryPolicy
from clinicflow.ingest.extractors import DocumentText, LLMExtractor
from clinicflow.ingest.pipeline import IngestSettings, process_file_batch
from tests.integration.ingest.conftest import pg_rows, referral, write_tree
from tests.integration.ingest.llm_server import LLMServer
from tests.support.corpus import build_corpus

# The scans beyond one PNG page are scored by tests/unit/ingest/test_corpus_scoring.py: left out here (OCR time).
_SLOW_SCANS = (
    "scanned-referral.tiff",
    "scanned-discharge.pdf",
    "phone-photo.jpg",
    "progress-note-scan.png",
    "fax-sideways.png",
    "fax-stamped.pdf",
    "scanned-consult-jbig2.pdf",
    "cardiology-letter-glyph-codes.pdf",
    "phone-photo-referral.heic",
)


@pytest.fixture
def ingest_env(ingest_db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_DATABASE", ingest_db.database)
    return ingest_db


@pytest.fixture
def llm_env(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> LLMServer:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_INGEST_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("CLINICFLOW_INGEST_LLM_MODEL", "test-model")
    monkeypatch.setenv("CLINICFLOW_INGEST_LLM_BATCH_SIZE", "1")
    monkeypatch.setenv("CLINICFLOW_INGEST_LLM_RETRIES", "0")
    return llm_server


def test_first_run_of_a_mixed_inbox_stages_every_readable_document(
    prefect_server: None, ingest_env: Any, tmp_path: Path
) -> None:
    from flows.ingest_files import ingest_files, replay_dead_letters

    inbox = tmp_path / "inbox"
    truths = build_corpus(inbox)
    for name in _SLOW_SCANS:
        (inbox / name).unlink()
        truths.pop(name)
    outside = tmp_path / "elsewhere" / "secret.txt"
    outside.parent.mkdir()
    outside.write_text("MRN: 12345678 OUTSIDE-SECRET")
    os.symlink(outside, inbox / "link-out.txt")
    os.symlink(inbox / "gone.txt", inbox / "dangling.txt")

    state = ingest_files(str(inbox / "**" / "*"), return_state=True)  # default options: rules, max_error_rate 0.1
    assert state.is_failed()
    assert "every readable document was staged" in state.message
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.documents") == [(len(truths),)]
    medical = sum(1 for t in truths.values() if t["expect"] == "medical")
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.medical") == [(medical,)]
    assert pg_rows(
        ingest_env,
        "SELECT count(*) FROM ingest.documents WHERE text_content LIKE '%%OUTSIDE-SECRET%%' "
        "OR extracted_text LIKE '%%OUTSIDE-SECRET%%'",
    ) == [(0,)]
    assert pg_rows(
        ingest_env,
        "SELECT reason, source_uri LIKE '%%link-out.txt' FROM ingest.dead_letters WHERE stage = 'read' ORDER BY reason",
    ) == [("not-found", False), ("outside-root", True)]
    # Every extract letter points at a staged document, names its extractor and the expected reason.
    letters = pg_rows(
        ingest_env,
        "SELECT l.reason, d.uri, l.extractor FROM ingest.dead_letters l "
        "JOIN ingest.documents d ON d.id::text = l.pointer WHERE l.stage = 'extract'",
    )
    assert len(letters) == len(truths) - medical
    for reason, uri, extractor in letters:
        assert extractor == "rules", (uri, reason)
        assert reason == truths[uri.rsplit("/", 1)[1]]["expect"], (uri, reason)
    assert pg_rows(
        ingest_env,
        "SELECT count(*) FROM ingest.documents WHERE text_method = 'ocr' AND ocr_confidence > 50 AND page_count = 1",
    ) == [(1,)]
    # Provenance per field: parser and span or segment.
    (provenance,) = pg_rows(
        ingest_env,
        "SELECT m.provenance FROM ingest.medical m JOIN ingest.documents d "
        "ON d.id = m.document_id WHERE d.uri LIKE '%%adt-a01-escapes.hl7'",
    )[0]
    assert provenance["patient_id"].startswith("rules:hl7:PID")
    assert provenance["patient_id"].endswith("PID-3[1]")

    # The letters replay: the documents are there, so they fail again for their own reasons, never a missing one.
    replayed = replay_dead_letters(return_state=True)
    assert replayed.is_failed()
    reasons = {r[0] for r in pg_rows(ingest_env, "SELECT reason FROM ingest.dead_letters WHERE status = 'open'")}
    assert reasons == {"not-clinical", "ambiguous-field", "missing-field", "not-found", "outside-root"}


def test_a_replayed_llm_letter_goes_back_to_the_llm(
    prefect_server: None, ingest_env: Any, llm_env: LLMServer, tmp_path: Path
) -> None:
    from flows.ingest_files import replay_dead_letters

    write_tree(tmp_path, {f"letter{n}.txt": referral(n) for n in range(1, 3)})
    store = LocalStore(tmp_path)
    llm_env.script = ["{not json"]  # letter1: a malformed answer
    llm = LLMExtractor(llm_env.client(), "test-model", batch_size=1, retry=RetryPolicy(0))
    # Decoys never reach the model: the same not-clinical check as the rules extractor, with its reason.
    (decoy,) = llm.extract([DocumentText("x", "x", "INVOICE #7\nAccount No: 55123\nTotal amount due: $314.00\n")])
    assert (decoy.reason, decoy.medical) == ("not-clinical", None)
    assert "invoice" in decoy.message
    assert llm_env.requests == []
    counts = process_file_batch(
        ingest_env,
        store,
        list(matching_objects(store, parse_location(str(tmp_path / "*")))),
        IngestSettings(run_id="r1"),
        llm,
    )
    assert dict(counts.dead_lettered) == {"extract/malformed-output": 1}
    assert pg_rows(ingest_env, "SELECT extractor FROM ingest.dead_letters") == [("llm",)]
    before = len(llm_env.requests)
    result = replay_dead_letters()  # no --extractor: the letter's own
    assert (result["replayed"], result["still_open"]) == (1, 0)
    assert len(llm_env.requests) == before + 1
    assert pg_rows(ingest_env, "SELECT extractor, count(*) FROM ingest.medical GROUP BY 1") == [("llm", 2)]


def test_reextract_switches_a_folder_to_another_extractor_and_back(
    prefect_server: None, ingest_env: Any, llm_env: LLMServer, tmp_path: Path
) -> None:
    from clinicflow.cli import app
    from flows.ingest_files import ingest_files

    write_tree(tmp_path, {f"in/letter{n}.txt": referral(n) for n in range(4)} | {"other/x.txt": referral(9)})
    ingest_files(str(tmp_path / "**" / "*.txt"))
    rows = "SELECT extractor, count(*), count(DISTINCT document_id) FROM ingest.medical GROUP BY 1 ORDER BY 1"
    assert pg_rows(ingest_env, rows) == [("rules", 5, 5)]
    runner = CliRunner()
    like = ["--uri-like", "%/in/%"]
    result = runner.invoke(app, ["ingest", "reextract", "--extractor", "llm", *like])
    assert result.exit_code == 0, result.output
    assert pg_rows(ingest_env, rows) == [("llm", 4, 4), ("rules", 1, 1)]
    (provenance,) = pg_rows(ingest_env, "SELECT provenance FROM ingest.medical WHERE extractor = 'llm' LIMIT 1")[0]
    assert provenance["patient_id"] == "llm:test-model:medical-v2"
    requests = len(llm_env.requests)
    assert runner.invoke(app, ["ingest", "reextract", "--extractor", "llm", *like]).exit_code == 0
    assert len(llm_env.requests) == requests  # idempotent: the cache answers
    assert runner.invoke(app, ["ingest", "reextract", "--extractor", "rules", *like]).exit_code == 0
    assert pg_rows(ingest_env, rows) == [("rules", 5, 5)]
    assert pg_rows(ingest_env, "SELECT count(*) FROM ingest.documents") == [(5,)]


def test_listing_survives_dangling_and_outside_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_tree(root, {"a/ok.txt": b"MRN: 1", "b/vanishing.txt": b"x"})
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink(tmp_path / "outside.txt", root / "a" / "out.txt")
    os.symlink(root / "missing.txt", root / "a" / "dangling.txt")
    os.symlink(root / "a" / "ok.txt", root / "a" / "inside-link.txt")
    os.symlink(tmp_path, root / "a" / "dir-out")
    listed = {info.key: info.problem for info in LocalStore(root).list("")}
    assert listed == {
        "a/dangling.txt": "not-found",
        "a/dir-out": "outside-root",
        "a/inside-link.txt": None,
        "a/ok.txt": None,
        "a/out.txt": "outside-root",
        "b/vanishing.txt": None,
    }
    with pytest.raises(PermissionError):
        LocalStore(root).read("a/out.txt", 100)
