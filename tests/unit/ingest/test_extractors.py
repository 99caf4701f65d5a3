"""Extractors: the offline rules extractor, and the LLM extractor against a scripted local OpenAI-compatible server."""

from __future__ import annotations

import json
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


def _medications(text: str) -> list[str]:
    (out,) = RulesExtractor().extract([DocumentText("d", "s", "Patient: Ana Ruiz  MRN: 881\nDOB: 01/02/1960\n" + text)])
    assert out.ok, out.message
    return out.medical.medications


def test_medications_named_in_prose_are_read_when_taken_now() -> None:
    hpi = (
        "History of present illness: atrial fibrillation on apixaban 5 mg twice daily. Hypertension, controlled\n"
        "on lisinopril 20 mg daily. She takes Eliquis 5 mg BID. He was on warfarin 5 mg until 2024, stopped\n"
        "metformin 500 mg, is not on aspirin 81 mg, allergic to amoxicillin 500 mg, on average 2 tablets a day.\n"
        "If pain persists, start on ibuprofen 400 mg.\n"
        "FAMILY HISTORY\nMother is on insulin 10 units nightly.\n"
    )
    assert _medications(hpi) == ["apixaban 5 mg twice daily", "lisinopril 20 mg daily", "Eliquis 5 mg BID"]
    # A drug of the medication list is not read again from the prose.
    listed = "Medications:\n- Apixaban 5 mg BID\n\nHPI: anticoagulated on apixaban 5 mg twice daily.\n"
    assert _medications(listed) == ["Apixaban 5 mg BID"]


def test_fhir_r5_resources_are_read_and_an_invalid_one_names_its_fields_not_its_values() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "identifier": [{"value": "MR-9"}],
                          "name": [{"family": "Lind", "given": ["Maren"]}], "birthDate": "1990-07-21"}},
            {"resource": {"resourceType": "Encounter", "id": "e", "status": "completed",
                          "actualPeriod": {"start": "2026-11-20T09:00:00Z"},
                          "participant": [{"actor": {"display": "Dr. Tomas Berg"}}]}},
            {"resource": {"resourceType": "MedicationStatement", "id": "m", "status": "recorded",
                          "subject": {"reference": "Patient/p"},
                          "medication": {"concept": {"text": "albuterol 90 mcg inhaler"}},
                          "dosage": [{"text": "2 puffs as needed"}]}},
        ],
    }  # fmt: skip
    (out,) = RulesExtractor().extract([DocumentText("d", "s", json.dumps(bundle))])
    m = out.medical
    assert (m.patient_id, m.encounter_date, m.provider) == ("MR-9", date(2026, 11, 20), "Dr. Tomas Berg")
    assert m.medications == ["albuterol 90 mcg inhaler 2 puffs as needed"]
    assert m.provenance["medications"] == "rules:fhir:MedicationStatement/m.medication.concept"
    bundle["entry"][2]["resource"]["dosage"] = [{"text": "2 puffs", "secret": "Maren's note"}]
    (out,) = RulesExtractor().extract([DocumentText("d", "s", json.dumps(bundle))])
    assert out.reason == "invalid-structure"
    assert "fhir:MedicationStatement/m: not a valid FHIR R4B or R5 resource" in out.message
    assert "dosage.0.secret (extra_forbidden)" in out.message
    assert "Maren" not in out.message


def test_the_visit_date_from_admitted_or_the_notes_title_line_never_from_when_it_was_printed() -> None:
    def encounter(text: str) -> date | None:
        (out,) = RulesExtractor().extract([DocumentText("d", "s", text + "\nPatient: Ana Ruiz  MRN: 881\n")])
        assert out.ok, out.message
        return out.medical.encounter_date

    assert encounter("DISCHARGE SUMMARY\nAdmitted 2026-11-02, discharged 2026-11-06.") == date(2026, 11, 2)
    assert encounter("PROGRESS NOTE  2026-11-25") == date(2026, 11, 25)
    assert encounter("Consultation Report - 03/04/2024\nVisit Date: 03/05/2024") == date(2024, 3, 5)  # a label wins
    assert encounter("Lab report printed 2026-12-01") is None
    assert encounter("Newsletter 2026-11-02") is None


def test_an_hl7_batch_file_is_read_and_two_patients_in_it_conflict() -> None:
    msh = "MSH|^~\\&|A|B|C|D|20261101||ADT^A08|{n}|P|2.5\r"
    one = msh.format(n=1) + "PID|1||111^^^H^MR||One^Ann||19700101|F\rDG1|1||E11.9^^I10\r"
    two = msh.format(n=2) + "PID|1||222^^^H^MR||Two^Bob||19710101|M\r"
    envelope = "FHS|^~\\&|A\rBHS|^~\\&|A\r{}BTS|{}\rFTS|1\r"
    (out,) = RulesExtractor().extract([DocumentText("d", "s", envelope.format(one, 1))])
    assert (out.medical.patient_id, out.medical.diagnosis_codes) == ("111", ["E11.9"])
    (out,) = RulesExtractor().extract([DocumentText("d", "s", envelope.format(one + two, 2))])
    assert (out.reason, out.message.split(" (at ")[0]) == ("ambiguous-field", "patient_id: 2 conflicting candidates")
    (out,) = RulesExtractor().extract([DocumentText("d", "s", envelope.format("", 0))])
    assert (out.reason, out.message) == ("invalid-structure", "HL7 v2 batch holds no message (no MSH segment)")


def _spanned(text: str, provenance: str) -> str:
    """The stored text a provenance ``rules:text:chars START-END`` points at."""
    start, end = (int(n) for n in provenance.rsplit(" ", 1)[1].split("-"))
    return text[start:end]


def test_no_break_spaces_read_as_spaces_and_offsets_still_point_into_the_text() -> None:
    text = "Visit summary\nPatient: Ana\u00a0Gomez \u00a0 MRN:\u202f55120\nDOB: 1990-01-02\n"
    (out,) = RulesExtractor().extract([DocumentText("d", "s", text)])
    assert (out.medical.patient_name, out.medical.patient_id) == ("Ana Gomez", "55120")
    assert _spanned(text, out.medical.provenance["patient_name"]) == "Ana\u00a0Gomez"


def test_an_ocr_letter_o_in_a_dotted_codes_digit_is_read_as_zero_and_words_stay_words() -> None:
    text = "Patient: Ana Ruiz  MRN: 881\nDOB: 01/02/1960\nDiagnosis: impacted tooth (KO1.1); NOV visit; LOA noted.\n"
    (out,) = RulesExtractor().extract([DocumentText("d", "s", text)])
    assert out.medical.diagnosis_codes == ["K01.1"]


def test_a_letters_signer_is_its_provider_when_no_line_names_one_and_only_a_doctor() -> None:
    def provider(text: str) -> str | None:
        (out,) = RulesExtractor().extract([DocumentText("d", "s", "Patient: Ana Ruiz  MRN: 881\n" + text)])
        assert out.ok, out.message
        return out.medical.provider

    assert (
        provider("Dear colleague,\nthank you.\n\nYours sincerely,\nDr Fiona McLeod\nConsultant\n") == "Dr Fiona McLeod"
    )
    assert provider("Kind regards,\n\nAmy Cho, DDS\n") == "Amy Cho, DDS"
    assert provider("DOS: 2024-07-15 | Surgeon: Dr. Ben Okoye, DDS\nSincerely,\nDr. Other Person\n") == (
        "Dr. Ben Okoye, DDS"  # a labelled provider wins over the signature
    )
    assert provider("Sincerely,\nThe Northside Team\n") is None
    assert provider("Regards,\nJohn\n") is None


def test_an_email_closing_introduces_its_signer_too_and_only_a_doctor() -> None:
    def provider(closing: str) -> str | None:
        text = f"Patient: Ana Ruiz  MRN: 881\nPlease see her next week.\n\n{closing}\n"
        (out,) = RulesExtractor().extract([DocumentText("d", "s", text)])
        return out.medical.provider

    assert provider("Thank you,\nDr. Helen Park, DDS") == "Dr. Helen Park"
    assert provider("Many thanks!\nAmy Cho, DMD") == "Amy Cho, DMD"
    assert provider("Best wishes,\n\nDr Fiona McLeod") == "Dr Fiona McLeod"
    assert provider("Thanks,\nJenny\nFront desk") is None


def test_windows_line_ends_read_as_line_ends_and_offsets_still_point_into_the_text() -> None:
    text = "Patient: Marcus Whitfield\r\nDOB: 03/14/1971\r\nMRN: LO-448812\r\nThank you,\r\nDr. Helen Park, DDS\r\n"
    (out,) = RulesExtractor().extract([DocumentText("d", "s", text)])
    assert (out.medical.patient_name, out.medical.provider) == ("Marcus Whitfield", "Dr. Helen Park")
    assert _spanned(text, out.medical.provenance["patient_name"]) == "Marcus Whitfield"
    (old_mac,) = RulesExtractor().extract([DocumentText("d", "s", text.replace("\r\n", "\r"))])
    assert old_mac.medical.patient_name == "Marcus Whitfield"


def test_a_comma_list_of_medications_is_one_item_per_drug_not_per_sig() -> None:
    text = (
        "Patient: Ana Ruiz  MRN: 881\nMedications: atorvastatin 20 mg daily, metformin 500 mg twice daily, "
        "and vitamin D 1000 IU daily.\nCurrent medications:\n- amoxicillin 500 mg, take 1 capsule three times daily\n"
        "- Tylenol 500 mg, 2 tabs as needed\n\nPlan: topiramate 25 mg nightly, increase to 50 mg.\n"
    )
    (out,) = RulesExtractor().extract([DocumentText("d", "s", text)])
    assert out.medical.medications == [
        "atorvastatin 20 mg daily",
        "metformin 500 mg twice daily",
        "vitamin D 1000 IU daily",
        "amoxicillin 500 mg, take 1 capsule three times daily",
        "Tylenol 500 mg, 2 tabs as needed",
        "topiramate 25 mg nightly, increase to 50 mg",
    ]


def test_an_ocr_one_for_a_chapter_i_codes_letter_is_read_as_i_only_where_nothing_else_fits() -> None:
    def codes(line: str) -> list[str]:
        text = f"Patient: Ana Ruiz  MRN: 881\nAssessment:\n{line}\n"
        (out,) = RulesExtractor().extract([DocumentText("d", "s", text)])
        return out.medical.diagnosis_codes

    assert codes("atrial fibrillation (148.91), rate controlled") == ["I48.91"]
    assert codes("DX: l25.10") == ["I25.10"]
    assert codes("fever (101.2)") == []  # one decimal: a temperature, not I01.2
    assert codes("LDL (125.45) mg/dL") == []  # a unit follows
    assert codes("coronary disease (125.4)") == []  # I25.4 is a category, never billed
    assert codes("no atrial fibrillation (148.91)") == []  # negated


def test_a_name_label_that_says_its_order_is_read() -> None:
    def name(line: str) -> str | None:
        (out,) = RulesExtractor().extract([DocumentText("d", "s", f"{line}\nMRN: 123456\n")])
        return out.medical.patient_name

    assert name("Patient Name (Last, First): Whitfield, Marcus") == "Marcus Whitfield"
    assert name("Name (Last, First, MI): WHITFIELD, MARCUS J") == "Marcus J Whitfield"
    assert name("Patient Name (First Last): Marcus Whitfield") == "Marcus Whitfield"


def test_label_styles_of_ehr_printouts_are_read() -> None:
    def fields(text: str) -> tuple[object, ...]:
        (out,) = RulesExtractor().extract([DocumentText("d", "s", text + "\n")])
        medical = out.medical
        return (medical.patient_name, medical.patient_id, medical.date_of_birth, medical.encounter_date)

    assert fields(
        "Pt: Marcus Whitfield\nEMR #: 123456\nDOB/Age: 03/14/1971 (55 yo)\nVisit Date/Time: 11/02/2026 08:15"
    ) == (
        "Marcus Whitfield",
        "123456",
        date(1971, 3, 14),
        date(2026, 11, 2),
    )
    assert fields("Patient: Ana Ruiz  MRN: 881\nDate/Time of Service: 11/03/2026 14:20")[3] == date(2026, 11, 3)
    assert fields("Pt: 45 yo male\nMRN: 881")[0] is None  # "Pt:" before words that are no name


def test_undotted_icd10_codes_as_claims_write_them_are_read_in_a_diagnosis_context_only() -> None:
    def codes(body: str) -> tuple[list[str], list[str]]:
        (out,) = RulesExtractor().extract([DocumentText("d", "s", f"Patient: Ana Ruiz  MRN: 881\n{body}\n")])
        return out.medical.diagnosis_codes, out.medical.procedure_codes

    assert codes("Dx: K0530, E119") == (["K05.30", "E11.9"], [])
    assert codes("Dx: K0530  CPT: 99213, D1110") == (["K05.30"], ["D1110", "99213"])
    assert codes("DIAGNOSES:\nE119\nPROCEDURES:\nD1110") == (["E11.9"], ["D1110"])
    assert codes("Procedures: D1110 prophylaxis; J1100 injection") == ([], ["D1110", "J1100"])
    assert codes("Dx: no evidence of E119") == ([], [])
    assert codes("Room B201, call ext K0530") == ([], [])  # no diagnosis context


def _fhir_lines(*resources: dict) -> str:
    return "\n".join(json.dumps(r) for r in resources) + "\n"


def test_fhir_ndjson_of_one_patient_is_read_and_resources_of_several_patients_are_never_merged() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"value": "A55102"}],
        "name": [{"family": "Okafor", "given": ["Grace"]}],
        "birthDate": "1961-07-14",
    }

    def condition(cid: str, subject: str, code: str) -> dict:
        return {
            "resourceType": "Condition",
            "id": cid,
            "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
        }

    # A patient's $everything as NDJSON (a bulk export's shape), absolute and relative references alike.
    one = _fhir_lines(
        patient,
        condition("c1", "Patient/p1", "E11.9"),
        condition("c2", "https://ehr.example/fhir/Patient/p1/_history/3", "I10"),
    )
    (out,) = RulesExtractor().extract([DocumentText("d", "s", one)])
    assert (out.medical.patient_id, out.medical.diagnosis_codes) == ("A55102", ["E11.9", "I10"])
    assert out.medical.provenance["diagnosis_codes"].startswith("rules:fhir:Condition/c1.code.coding[0]")
    # A bulk export's Condition file (two patients): refused by name, not one row of both patients' codes.
    bulk = _fhir_lines(condition("c1", "Patient/p1", "E11.9"), condition("c9", "Patient/p2", "J45.909"))
    (out,) = RulesExtractor().extract([DocumentText("d", "s", bulk)])
    assert out.reason == "ambiguous-field"
    assert "2 patients (Patient/p1, Patient/p2)" in out.message
    # The same in a Bundle whose only Patient is not the subject of every resource.
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": "urn:uuid:7f1c", "resource": {k: v for k, v in patient.items() if k != "id"}},
        {"resource": condition("c1", "urn:uuid:7f1c", "E11.9")},
        {"resource": condition("c2", "Patient/p2", "I10")},
    ]}  # fmt: skip
    (out,) = RulesExtractor().extract([DocumentText("d", "s", json.dumps(bundle))])
    assert (out.reason, out.message.split(";")[0]) == (
        "ambiguous-field",
        "patient_id: resources of 2 patients (Patient/p2, urn:uuid:7f1c)",
    )
    bundle["entry"][2]["resource"]["subject"]["reference"] = "urn:uuid:7f1c"
    (out,) = RulesExtractor().extract([DocumentText("d", "s", json.dumps(bundle))])
    assert out.ok
    assert out.medical.diagnosis_codes == ["E11.9", "I10"]
    # A line that does not parse is named by its number.
    (out,) = RulesExtractor().extract([DocumentText("d", "s", one + '{"resourceType": "Condition", "id": \n')])
    assert (out.reason, out.message) == ("invalid-structure", "FHIR NDJSON line 4 does not parse")


def test_a_soap_notes_one_letter_headings_are_its_sections_and_a_changed_dose_is_the_new_one() -> None:
    note = (
        "SOAP NOTE\nName: Luis Ortega    MRN: LO-4410    DOB: 11/23/1966\nVisit Date: 07/09/2024\n"
        "S: 58M with 2 weeks of exertional chest pressure. Denies syncope. No history of MI.\n"
        "O: BP 148/92, HR 84. ECG NSR, no ST changes.\n"
        "A: Chest pain, unspecified (R07.9); rule out unstable angina (I20.0). Essential hypertension (I10).\n"
        "P: Start aspirin 81 mg daily. Increase lisinopril to 20 mg daily. Stress test ordered (93015).\n"
        "- Increase metformin from 500 mg to 1000 mg BID\n"
        "Seen by: Dr. Emily Zhao\n"
    )
    (out,) = RulesExtractor().extract([DocumentText("d", "s", note)])
    m = out.medical
    assert m.diagnosis_codes == ["R07.9", "I10"]  # the rule-out is not a diagnosis
    assert m.procedure_codes == ["93015"]  # a code in the plan
    assert m.medications == ["aspirin 81 mg daily", "lisinopril 20 mg daily", "metformin 1000 mg BID"]
    start, end = (int(v) for v in m.provenance["medications"].split("; ")[2].split("chars ")[1].split("-"))
    assert note[start:end] == "metformin from 500 mg to 1000 mg BID"  # the words as written
    # One "A:" line is an answer, not a SOAP note's assessment.
    (out,) = RulesExtractor().extract([DocumentText("d", "s", "MRN: 7\nQ: any allergies?\nA: Penicillin 500 mg\n")])
    assert out.medical.medications == []
