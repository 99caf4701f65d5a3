"""Extractors: the offline rules extractor, and the LLM extractor against a scripted local OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinicflow.connectors.objectstore.patterns import parse_location
from clinicflow.connectors.objectstore.stores import LocalStore, matching_objects
from clinicflow.core.retry import RetryPolicy
from clinicflow.ingest.deadletter import replay
from clinicflow.ingest.extractors import LLMExtractor
from clinicflow.ingest.pipeline import IngestSettings, process_file_batch
from tests.integration.ingest.conftest import pg_rows, referral, write_tree
from tests.integration.ingest.llm_server import LLMServer
from tests.unit.ingest.test_extractors import doc

FAKE_KEY = "fake-sentinel-not-a-credential-6"  # a key the letters must never show


def _llm(server: LLMServer, batch_size: int = 4, retries: int = 2) -> LLMExtractor:
    return LLMExtractor(server.client(), "test-model", batch_size=batch_size, retry=RetryPolicy(retries, 0.01))


def test_llm_batch_with_fallback_retries_transient_and_reports_malformed(llm_server: LLMServer) -> None:
    llm_server.script = [
        429,
        500,
        "this is not json {",  # the batch request: two transient errors, then a malformed answer
        # per-record fallback, in order:
        {"patientId": "MRN000001", "Diagnoses": ["E11.9"]},  # doc 1: good, other field names
        '```json\n{"mrn": "broken",\n```',  # doc 2: malformed JSON
        {"name": "Patient 3"},  # doc 3: missing patient_id
        503,  # doc 4: transient, then answered correctly by the server
    ]
    outcomes = _llm(llm_server).extract([doc(1), doc(2), doc(3), doc(4)])
    assert [o.document_id for o in outcomes] == ["doc-1", "doc-2", "doc-3", "doc-4"]  # nothing lost
    assert outcomes[0].ok
    assert outcomes[0].medical.patient_id == "MRN000001"
    assert outcomes[0].medical.diagnosis_codes == ["E11.9"]
    assert (outcomes[1].reason, outcomes[2].reason) == ("malformed-output", "missing-field")
    assert "broken" in outcomes[1].payload  # the raw answer is kept for the dead letter
    assert outcomes[3].ok
    assert outcomes[3].medical.patient_id == "MRN000004"
    assert len(llm_server.requests) == 3 + 1 + 1 + 1 + 2
    assert all(
        r["model"] == "test-model" and r["response_format"] == {"type": "json_object"} for r in llm_server.requests
    )


def test_llm_batch_answer_is_used_when_valid(llm_server: LLMServer) -> None:
    outcomes = _llm(llm_server, batch_size=3).extract([doc(1), doc(2), doc(3), doc(4), doc(5)])
    assert [o.medical.patient_id for o in outcomes] == [f"MRN{n:06d}" for n in range(1, 6)]
    assert len(llm_server.requests) == 2  # batches of 3 and 2, no fallback


def test_a_server_without_json_mode_is_asked_again_without_it_once(llm_server: LLMServer) -> None:
    llm_server.refuse_json_mode = True
    # Without JSON mode, answers come wrapped: a reasoning model's <think> block, a sentence around the object.
    llm_server.script = [
        '<think>The record says MRN000001 {maybe}.</think>\n{"MRN": "MRN000001", "dx": ["E11.9"]}',
        'Here is the record: {"MRN": "MRN000002", "meds": ["Metformin 500 mg"]} Let me know if you need more.',
    ]
    extractor = _llm(llm_server, batch_size=1)
    outcomes = extractor.extract([doc(1), doc(2)])
    assert [o.ok for o in outcomes] == [True, True], [o.message for o in outcomes]
    assert (outcomes[0].medical.patient_id, outcomes[0].medical.diagnosis_codes) == ("MRN000001", ["E11.9"])
    assert (outcomes[1].medical.patient_id, outcomes[1].medical.medications) == ("MRN000002", ["Metformin 500 mg"])
    # One refused request, then every request without response_format.
    assert [("response_format" in r) for r in llm_server.requests] == [True, False, False]
    assert extractor.json_mode is False


def test_llm_errors_after_retries_and_permanent_errors(llm_server: LLMServer) -> None:
    llm_server.script = [503, 503, 503, 400]
    first, second = _llm(llm_server, batch_size=1, retries=2).extract([doc(1), doc(2)])
    assert first.reason == "llm-unavailable"
    assert "503" in first.message
    assert second.reason == "llm-error"
    assert "400" in second.message  # not retried
    assert len(llm_server.requests) == 4
    assert f"from {llm_server.base_url}" in first.message  # which endpoint, for the operator
    # Nothing listening: the message names the endpoint it could not reach, never a key.
    import openai

    unreachable = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key=FAKE_KEY, max_retries=0, timeout=2)
    (down,) = LLMExtractor(unreachable, "m", retry=RetryPolicy(0, 0.01)).extract([doc(3)])
    assert down.reason == "llm-unavailable"
    assert "APIConnectionError (http://127.0.0.1:9/v1)" in down.message
    assert FAKE_KEY not in down.message


def test_llm_extraction_dead_letters_replay_and_cache(tmp_path: Path, ingest_db: Any, llm_server: LLMServer) -> None:
    write_tree(tmp_path, {f"letter{n}.txt": referral(n) for n in range(1, 5)} | {"copy/letter1.txt": referral(1)})
    store = LocalStore(tmp_path)
    location = parse_location(str(tmp_path / "letter*.txt"))
    llm_server.script = ["{not json", "{not json", {"name": "no id"}]  # batch malformed; doc 1 malformed, doc 2 missing
    counts = process_file_batch(
        ingest_db, store, list(matching_objects(store, location)), IngestSettings(run_id="r1"), _llm(llm_server)
    )
    assert (counts.staged, counts.extracted) == (4, 2)
    assert dict(counts.dead_lettered) == {"extract/malformed-output": 1, "extract/missing-field": 1}
    letters = pg_rows(
        ingest_db, "SELECT stage, reason, status, payload IS NOT NULL FROM ingest.dead_letters ORDER BY reason"
    )
    assert letters == [("extract", "malformed-output", "open", True), ("extract", "missing-field", "open", True)]

    before = len(llm_server.requests)
    result = replay(ingest_db, IngestSettings(run_id="replay"), extractor=_llm(llm_server))
    assert (result.replayed, result.still_open) == (2, 0)
    assert len(llm_server.requests) == before + 2
    assert pg_rows(
        ingest_db, "SELECT count(*), count(DISTINCT document_id), count(DISTINCT patient_id) FROM ingest.medical"
    ) == [(4, 4, 4)]

    # The same content under another name: extracted from the cache, no request.
    copy = LocalStore(tmp_path / "copy")
    before = len(llm_server.requests)
    counts = process_file_batch(ingest_db, copy, list(copy.list("")), IngestSettings(run_id="r2"), _llm(llm_server))
    assert (counts.staged, counts.extracted, counts.from_cache) == (1, 1, 1)
    assert len(llm_server.requests) == before
