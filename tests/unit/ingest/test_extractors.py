"""Extractors: the offline rules extractor, and the LLM extractor against a scripted local OpenAI-compatible server."""

from __future__ import annotations

from datetime import date

from clinicflow.ingest.extractors import DocumentText, RulesExtractor, validate_output
from clinicflow.ingest.medical import canonical_key, normalise_fields
from tests.support.ingest_files import referral


def doc(n: int) -> DocumentText:
    return DocumentText(f"doc-{n}", f"sha-{n}", referral(n).decode())


def test_field_names_are_normalised_by_alias() -> None:
    assert canonical_key("Patient ID") == canonical_key("patientId") == canonical_key("patient-id") == "patient_id"
    raw = {
        "MRN": "7",
        "Attending Physician": "Dr. X",
        "Dx Codes": "e11.9, K02.52",
        "DOS": "2024-01-02",
        "Rx": ["A", "A", "B"],
        "unknown": 1,
    }
    assert normalise_fields(raw) == {
        "patient_id": "7",
        "provider": "Dr. X",
        "diagnosis_codes": "e11.9, K02.52",
        "encounter_date": "2024-01-02",
        "medications": ["A", "A", "B"],
    }
    out = validate_output("d", raw)
    assert out.ok
    assert out.medical.diagnosis_codes == ["E11.9", "K02.52"]
    assert out.medical.medications == ["A", "B"]
    assert validate_output("d", {"name": "x"}).reason == "missing-field"
    assert validate_output("d", {"mrn": "1", "dob": "not a date"}).reason == "invalid-field"
    assert validate_output("d", {"mrn": "1", "dob": "03/14/1961", "DOS": "May 2, 2024"}).medical.date_of_birth == date(
        1961, 3, 14
    )
    assert validate_output("d", ["a list"]).reason == "malformed-output"


def test_rules_extractor_reads_a_referral() -> None:
    (out,) = RulesExtractor().extract([doc(3)])
    m = out.medical
    assert (m.patient_id, m.patient_name, m.date_of_birth, m.encounter_date, m.provider) == (
        "MRN000003",
        "Dan Adler",
        date(1961, 3, 14),
        date(2024, 5, 4),
        "Dr. Alan Grant, DDS",
    )
    assert (m.diagnosis_codes, m.procedure_codes) == (["E11.9", "K02.52"], ["D2391", "99213"])
    assert m.medications == ["Metformin 500 mg", "Amoxicillin 500 mg"]
    assert m.summary.startswith("Caries")
    (out,) = RulesExtractor().extract([DocumentText("d", "s", "a note without any labels")])
    assert out.reason == "not-clinical"
    (out,) = RulesExtractor().extract([DocumentText("d", "s", "Diagnosis: E11.9\nDOB: 01/02/1960\n")])
    assert out.reason == "missing-field"


def test_rules_extractor_reads_an_hl7_pid_segment() -> None:
    message = "MSH|^~\\&|APP|FAC|||202406110830||ADT^A04|1|P|2.5\rPID|1||PAT77^^^MRN||Sample^Ben^Q||19751102|M\r"
    (out,) = RulesExtractor().extract([DocumentText("d", "s", message)])
    m = out.medical
    assert (m.patient_id, m.patient_name, m.date_of_birth, m.encounter_date) == (
        "PAT77",
        "Ben Q Sample",
        date(1975, 11, 2),
        date(2024, 6, 11),
    )
