"""Extractors: the offline rules extractor, and the LLM extractor against a scripted local OpenAI-compatible server."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from clinicflow.connectors.objectstore.readers import LocalStore, matching_objects
from clinicflow.ingest.deadletter import replay
from clinicflow.ingest.extractors import DocumentText, LLMExtractor, RulesExtractor, validate_output
from clinicflow.ingest.medical import canonical_key, normalise_fields
from clinicflow.ingest.patterns import parse_location
from clinicflow.ingest.pipeline import IngestSettings, process_file_batch
from tests.integration.ingest.conftest import pg_rows, referral, write_tree
from tests.integration.ingest.llm_server import LLMServer


def doc(n: int) -> DocumentText:
    return DocumentText(f"doc-{n}", f"sha-{n}", referral(n).decode())


def test_field_names_are_normalised_by_alias() -> None:
    assert canonical_key("Patient ID") == canonical_key("patientId") == canonical_key("patient-id") == "patient_id"
    raw = {"MRN": "7", "Attending Physician": "Dr. X", "Dx Codes": "e11.9, K02.52", "DOS": "2024-01-02",
           "Rx": ["A", "A", "B"], "unknown": 1}
    assert normalise_fields(raw) == {"patient_id": "7", "provider": "Dr. X", "diagnosis_codes": "e11.9, K02.52",
                                     "encounter_date": "2024-01-02", "medications": ["A", "A", "B"]}
    out = validate_output("d", raw)
    assert out.ok and out.medical.diagnosis_codes == ["E11.9", "K02.52"] and out.medical.medications == ["A", "B"]
    assert validate_output("d", {"name": "x"}).reason == "missing-field"
    assert validate_output("d", {"mrn": "1", "dob": "not a date"}).reason == "invalid-field"
    assert validate_output("d", {"mrn": "1", "dob": "03/14/1961", "DOS": "May 2, 2024"}).medical.date_of_birth == date(
        1961, 3, 14)
    assert validate_output("d", ["a list"]).reason == "malformed-output"


def test_rules_extractor_reads_a_referral() -> None:
    (out,) = RulesExtractor().extract([doc(3)])
    m = out.medical
    assert (m.patient_id, m.patient_name, m.date_of_birth, m.encounter_date, m.provider) == (
        "MRN000003", "Patient 3", date(1961, 3, 14), date(2024, 5, 4), "Dr. Alan Grant, DDS")
    assert (m.diagnosis_codes, m.procedure_codes) == (["E11.9", "K02.52"], ["D2391", "99213"])
    assert m.medications == ["Metformin 500 mg", "Amoxicillin 500 mg"] and m.summary.startswith("Caries")
    (out,) = RulesExtractor().extract([DocumentText("d", "s", "a note without any labels")])
    assert out.reason == "missing-field"


def _llm(server: LLMServer, batch_size: int = 4, retries: int = 2) -> LLMExtractor:
    return LLMExtractor(server.client(), "test-model", batch_size=batch_size, retries=retries, backoff_base=0.01)


def test_llm_batch_with_fallback_retries_transient_and_reports_malformed(llm_server: LLMServer) -> None:
    llm_server.script = [
        429, 500, "this is not json {",  # the batch request: two transient errors, then a malformed answer
        # per-record fallback, in order:
        {"patientId": "MRN000001", "Diagnoses": ["E11.9"]},  # doc 1: good, other field names
        "```json\n{\"mrn\": \"broken\",\n```",  # doc 2: malformed JSON
        {"name": "Patient 3"},  # doc 3: missing patient_id
        503,  # doc 4: transient, then answered correctly by the server
    ]
    outcomes = _llm(llm_server).extract([doc(1), doc(2), doc(3), doc(4)])
    assert [o.document_id for o in outcomes] == ["doc-1", "doc-2", "doc-3", "doc-4"]  # nothing lost
    assert outcomes[0].ok and outcomes[0].medical.patient_id == "MRN000001"
    assert outcomes[0].medical.diagnosis_codes == ["E11.9"]
    assert (outcomes[1].reason, outcomes[2].reason) == ("malformed-output", "missing-field")
    assert "broken" in outcomes[1].payload  # the raw answer is kept for the dead letter
    assert outcomes[3].ok and outcomes[3].medical.patient_id == "MRN000004"
    assert len(llm_server.requests) == 3 + 1 + 1 + 1 + 2
    assert all(r["model"] == "test-model" and r["response_format"] == {"type": "json_object"}
               for r in llm_server.requests)


def test_llm_batch_answer_is_used_when_valid(llm_server: LLMServer) -> None:
    outcomes = _llm(llm_server, batch_size=3).extract([doc(1), doc(2), doc(3), doc(4), doc(5)])
    assert [o.medical.patient_id for o in outcomes] == [f"MRN{n:06d}" for n in range(1, 6)]
    assert len(llm_server.requests) == 2  # batches of 3 and 2, no fallback


def test_llm_errors_after_retries_and_permanent_errors(llm_server: LLMServer) -> None:
    llm_server.script = [503, 503, 503, 400]
    first, second = _llm(llm_server, batch_size=1, retries=2).extract([doc(1), doc(2)])
    assert first.reason == "llm-unavailable" and "503" in first.message
    assert second.reason == "llm-error" and "400" in second.message  # not retried
    assert len(llm_server.requests) == 4


def test_llm_extraction_dead_letters_replay_and_cache(tmp_path: Path, ingest_db: Any, llm_server: LLMServer) -> None:
    write_tree(tmp_path, {f"letter{n}.txt": referral(n) for n in range(1, 5)} | {"copy/letter1.txt": referral(1)})
    store = LocalStore(tmp_path)
    location = parse_location(str(tmp_path / "letter*.txt"))
    llm_server.script = ["{not json", "{not json", {"name": "no id"}]  # batch malformed; doc 1 malformed, doc 2 missing
    counts = process_file_batch(ingest_db, store, list(matching_objects(store, location)),
                                IngestSettings(run_id="r1"), _llm(llm_server))
    assert (counts.staged, counts.extracted) == (4, 2)
    assert dict(counts.dead_lettered) == {"extract/malformed-output": 1, "extract/missing-field": 1}
    letters = pg_rows(ingest_db, "SELECT stage, reason, status, payload IS NOT NULL FROM ingest.dead_letters "
                                 "ORDER BY reason")
    assert letters == [("extract", "malformed-output", "open", True), ("extract", "missing-field", "open", True)]

    before = len(llm_server.requests)
    result = replay(ingest_db, IngestSettings(run_id="replay"), extractor=_llm(llm_server))
    assert (result.replayed, result.still_open) == (2, 0)
    assert len(llm_server.requests) == before + 2
    assert pg_rows(ingest_db, "SELECT count(*), count(DISTINCT document_id), count(DISTINCT patient_id) "
                              "FROM ingest.medical") == [(4, 4, 4)]

    # The same content under another name: extracted from the cache, no request.
    copy = LocalStore(tmp_path / "copy")
    before = len(llm_server.requests)
    counts = process_file_batch(ingest_db, copy, list(copy.list("")), IngestSettings(run_id="r2"), _llm(llm_server))
    assert (counts.staged, counts.extracted, counts.from_cache) == (1, 1, 1)
    assert len(llm_server.requests) == before


def test_rules_extractor_reads_an_hl7_pid_segment() -> None:
    message = "MSH|^~\\&|APP|FAC|||202406110830||ADT^A04|1|P|2.5\rPID|1||PAT77^^^MRN||Sample^Ben^Q||19751102|M\r"
    (out,) = RulesExtractor().extract([DocumentText("d", "s", message)])
    m = out.medical
    assert (m.patient_id, m.patient_name, m.date_of_birth, m.encounter_date) == (
        "PAT77", "Ben Sample", date(1975, 11, 2), date(2024, 6, 11))
