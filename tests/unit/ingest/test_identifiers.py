"""Never a wrong identifier: label styles, SSNs, conflicts (named by field and count only), dates, provenance."""

from __future__ import annotations

from datetime import date

import pytest

from clinicflow.ingest.extractors import DocumentText, RulesExtractor, validate_output
from clinicflow.ingest.fields import parse_any_date


def extract(text: str) -> tuple[str | None, str | None, object]:
    (out,) = RulesExtractor().extract([DocumentText("d", "s", text)])
    return out.reason, out.message, out.medical


@pytest.mark.parametrize(
    "label",
    [
        "MRN:",
        "MRN #",
        "MRN",
        "M.R.N.:",
        "**MRN:**",
        "Medical Record #:",
        "Medical Record Number:",
        "Med Rec No.:",
        "Patient ID:",
        "Patient Identifier:",
        "Pt ID:",
        "Chart No.:",
        "Chart #",
        "Chart Number:",
        "Hospital No.:",
    ],
)
def test_identifier_label_styles(label: str) -> None:
    reason, _, medical = extract(f"Clinic note\n{label} 00918273\nDOB: 01/02/1960\nDiagnosis: E11.9\n")
    assert reason is None
    assert medical.patient_id == "00918273"  # type: ignore[attr-defined]
    assert medical.provenance["patient_id"].startswith("rules:text:chars ")  # type: ignore[attr-defined]


def test_an_ssn_is_never_a_patient_id_and_an_account_number_only_without_an_mrn() -> None:
    assert extract("SSN: 123-45-6789\nDOB: 01/02/1960\nDiagnosis: E11.9\n")[0] == "missing-field"
    assert extract("Patient ID: 123-45-6789\nDOB: 01/02/1960\n")[0] == "missing-field"  # SSN-shaped
    _, _, medical = extract("SSN: 123-45-6789\nMRN: 5521907\nAcct#: 99\nDOB: 01/02/1960\n")
    assert medical.patient_id == "5521907"  # type: ignore[attr-defined]
    _, _, medical = extract("Acct#: 7781234\nDOB: 12/01/1966\nReason for referral: chest pain (R07.9)\n")
    assert medical.patient_id == "7781234"  # type: ignore[attr-defined]


def test_conflicts_are_dead_letters_that_name_the_field_count_and_places_never_values() -> None:
    reason, message, medical = extract(
        "Patient: Anil Patel  MRN: 20931\nPatient: Meera Patel  MRN: 20932\nDOB: 01/15/1970\n"
    )
    assert (reason, medical) == ("ambiguous-field", None)
    # Where each value stands (offsets into the stored text) lets a reviewer find them without the values.
    assert message == "patient_id: 2 conflicting candidates (at text:chars 26-31, text:chars 59-64)"
    assert "2093" not in message
    reason, message, _ = extract("MRN: 1001\nDOB: 01/15/1970\nDate of Birth: 02/15/1970\n")
    assert (reason, message) == (
        "ambiguous-field",
        "date_of_birth: 2 conflicting candidates (at text:chars 15-25, text:chars 41-51)",
    )
    # The same value twice, or a name written two ways, is no conflict.
    reason, _, medical = extract("Patient: SMITH, JOHN\nMRN: 77\nRE: John Smith  MRN # 77\nDOB: 01/15/1970\n")
    assert reason is None
    assert medical.patient_name == "John Smith"  # type: ignore[attr-defined]


def test_hl7_pid3_by_identifier_type_never_ss() -> None:
    msh = "MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5\r"
    _, _, medical = extract(msh + "PID|1||999-88-7777^^^SSA^SS~A77^^^H^MR||Doe^Jo||19600101\r")
    assert medical.patient_id == "A77"  # type: ignore[attr-defined]
    assert medical.provenance["patient_id"] == "rules:hl7:PID#2:PID-3[2]"  # type: ignore[attr-defined]
    assert extract(msh + "PID|1||999-88-7777^^^SSA^SS||Doe^Jo||19600101\r")[0] == "missing-field"
    assert extract(msh + "PID|1||A77^^^H^MR~A78^^^H^MR||Doe^Jo\r")[:2] == (
        "ambiguous-field",
        "patient_id: 2 conflicting candidates (at hl7:PID#2:PID-3[1], hl7:PID#2:PID-3[2])",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("03/04/2024", date(2024, 3, 4)),
        ("2024-03-04", date(2024, 3, 4)),
        ("4 March 2024", date(2024, 3, 4)),
        ("March 4, 2024", date(2024, 3, 4)),
        ("Mar. 4, 2024", date(2024, 3, 4)),
        ("04-Mar-2024", date(2024, 3, 4)),
        ("3/4/24", date(2024, 3, 4)),
        ("1/2/45", date(1945, 1, 2)),
        ("13/01/2024", None),
        ("23.04.1961", date(1961, 4, 23)),
        ("09.02.1971", None),  # dots: day-first, and never a guess
    ],
)
def test_dates_are_us_month_first(text: str, expected: date | None) -> None:
    assert parse_any_date(text) == expected


def test_a_model_answer_never_invents_an_identifier() -> None:
    text = "MRN: 4471902\nDOB: 1939-05-17"
    assert validate_output("d", {"mrn": "4471902"}, text=text).ok
    assert validate_output("d", {"mrn": "9999999"}, text=text).reason == "invalid-field"
    assert validate_output("d", {"mrn": "123-45-6789"}, text=text + "\nSSN: 123-45-6789").reason == "invalid-field"


_ADT = (
    "MSH|^~\\&|HIS|GEN|EHR|X|20240501083000||ADT^A08|99|P|2.5.1\rEVN|A08|20240501083000\r"
    "PID|1||{pid}||Okafor^Grace^M||19610714|F\rPV1|1|O|CLINIC||||1234^Raman^Priya^^^Dr\r"
)


@pytest.mark.parametrize(
    ("pid3", "expected"),
    [
        ("A55102^^^GEN^MR~99^^^GEN^PI", "A55102"),  # the MR number over any other
        ("A55102^^^GEN^PI", "A55102"),  # a feed whose only id is the patient's internal number
        ("A55102^^^GEN^PT~123-45-6789^^^SSA^SS", "A55102"),
        ("7788^^^GEN^AN~A55102^^^GEN^PI", "A55102"),  # never the account number
        ("123-45-6789^^^SSA^SS", "missing-field"),
        ("A1^^^GEN^PI~B2^^^OTHER^PI", "ambiguous-field"),  # two facilities' numbers: no guess
    ],
)
def test_an_hl7_patients_identifier_is_the_mr_number_else_its_patient_number(pid3: str, expected: str) -> None:
    (out,) = RulesExtractor().extract([DocumentText("d", "s", _ADT.format(pid=pid3))])
    assert (out.medical.patient_id if out.medical else out.reason) == expected


@pytest.mark.parametrize(
    ("line", "provider"),
    [
        ("Ordering Physician: Dr. Helen Park     NPI: 1629071234", "Dr. Helen Park"),  # the next column
        ("Attending: Dr. Helen Park NPI: 1629071234", "Dr. Helen Park"),  # the next label
        ("Attending:\tJohn Smith\tDept: Cardiology", "John Smith"),
        ("Physician: Mary Ellen Van Buren", "Mary Ellen Van Buren"),
        ("Provider: Sara Okoye, NP", "Sara Okoye, NP"),
    ],
)
def test_a_providers_name_ends_where_the_next_column_or_label_begins(line: str, provider: str) -> None:
    reason, message, medical = extract(f"MRN: 4471902\n{line}\n")
    assert getattr(medical, "provider", None) == provider, (reason, message)


def test_a_letters_patient_is_read_from_its_first_sentence_and_its_clinic_date() -> None:
    letter = (
        "Dear Dr. Patel,\n\nThank you for referring Ms. Hannah Blake (MRN 3345120, DOB 08/22/1985).\n"
        "I reviewed her in clinic on 2 April 2024 for chronic migraine (G43.709).\n\nSincerely,\nDr. Rachel Green\n"
    )
    reason, message, medical = extract(letter)
    assert (getattr(medical, "patient_name", None), getattr(medical, "encounter_date", None)) == (
        "Hannah Blake",
        date(2024, 4, 2),
    ), (reason, message)
    # A doctor named after "referring" is never the patient; a labelled name is read first.
    _, _, medical = extract("MRN: 1\nThank you for referring Dr. Smith's patient, Mr. Alan Cortez.\n")
    assert getattr(medical, "patient_name", None) is None


def test_a_ccdas_medical_record_number_is_the_id_its_sender_names_so() -> None:
    from pathlib import Path

    ccd = (Path(__file__).parents[2] / "corpus" / "ingest" / "docs" / "ccd-summary.xml").read_text()
    mrn = '<id root="1.3.6.1.4.1.22812.3.99930.3" extension="CCD-448120"/>'
    named = (
        '<id root="1.2.840.114350.1.13.0.1.7.5.737384.14" extension="Z7004242" assigningAuthorityName="EPIC MRN"/>'
        '<id root="1.2.840.114350.1.1" extension="1000009" assigningAuthorityName="EPI"/>'
    )
    assert getattr(extract(ccd.replace(mrn, named))[2], "patient_id", None) == "Z7004242"
    unnamed = '<id root="1.2.3" extension="A1"/><id root="1.2.4" extension="B2"/>'
    reason, message, _ = extract(ccd.replace(mrn, unnamed))
    assert (reason, message.split(" (at ")[0]) == ("ambiguous-field", "patient_id: 2 conflicting candidates")


def test_a_provider_in_capitals_reads_in_title_case_with_credentials_kept() -> None:
    _, _, medical = extract("MRN: 556677\nREFERRING PHYSICIAN: DR. ALAN SMITH\n")
    assert getattr(medical, "provider", None) == "Dr. Alan Smith"
    _, _, medical = extract("MRN: 556677\nORDERED BY: MARY O'NEIL-SMITH, DDS\n")
    assert getattr(medical, "provider", None) == "Mary O'Neil-Smith, DDS"
    _, _, medical = extract("MRN: 556677\nProvider: Sara McLeod, NP\n")
    assert getattr(medical, "provider", None) == "Sara McLeod, NP"  # as written when not all capitals


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("Conclusion: Heart failure (I50.2) suspected; no effusion.", "diagnosis_codes", []),
        ("Conclusion: Heart failure (I50.2) is suspected.", "diagnosis_codes", []),
        ("Assessment: Pulmonary embolism (I26.99) cannot be excluded.", "diagnosis_codes", []),
        ("Assessment: Acute sinusitis (J01.90) - suspected bacterial.", "diagnosis_codes", ["J01.90"]),
        ("Date of Surgery: 09/12/2024", "encounter_date", date(2024, 9, 12)),
        ("Study Date: 2024-08-22", "encounter_date", date(2024, 8, 22)),
        ("Prescriber: Dr. Nadia Petrova", "provider", "Dr. Nadia Petrova"),
        ("Referring: Dr. Alice Kim", "provider", "Dr. Alice Kim"),
        ("Reading physician: Samuel Adeyemi, MD, FACC", "provider", "Samuel Adeyemi, MD, FACC"),
    ],
)
def test_report_styles_surgery_and_study_dates_prescribers_and_a_suspected_finding(
    text: str, field: str, expected: object
) -> None:
    reason, message, medical = extract(f"MRN: 3318842\n{text}\n")
    assert getattr(medical, field, None) == expected, (reason, message)


def test_ocrs_semicolon_for_a_labels_colon_is_read() -> None:
    reason, message, medical = extract("Patient: Mary Foster\nDOB; 09/30/1950\nMRN; RFM-0044721\n")
    assert (getattr(medical, "patient_id", None), getattr(medical, "date_of_birth", None)) == (
        "RFM-0044721",
        date(1950, 9, 30),
    ), (reason, message)
