"""What a real inbox's documents showed: UK letters, the reporting clinician, prose medication lists, a parent's
birth date, generational suffixes, conflicts named by place."""

from __future__ import annotations

import pytest

from clinicflow.ingest.clinical import valid_national_id
from clinicflow.ingest.extractors import DocumentText, RulesExtractor


def extract(text: str) -> tuple[str | None, str | None, object]:
    (out,) = RulesExtractor().extract([DocumentText("d", "s", text)])
    return out.reason, out.message, out.medical


UK_LETTER = """Riverside Medical Practice
Date: 02.10.2024

Dear Dr Okafor,

Re: Mrs Margaret Ellen Thornton   DOB: 14.03.1972
NHS Number: 943 476 5919

I saw Mrs Thornton in clinic on 01.10.2024 with poorly controlled type 2 diabetes (E11.65).
Current medication: Levothyroxine 100 micrograms once daily; Metformin 1 g twice daily

Yours sincerely,

Dr James Whitfield
"""


def test_an_nhs_number_is_the_patient_id_when_its_check_digit_holds_and_ranks_below_a_hospital_number() -> None:
    reason, _, medical = extract(UK_LETTER)
    assert reason is None
    assert medical.patient_id == "9434765919"  # type: ignore[attr-defined]
    assert medical.encounter_date.isoformat() == "2024-10-01"  # type: ignore[attr-defined]  # the clinic, not the letter
    assert "Levothyroxine 100 micrograms once daily" in medical.medications  # type: ignore[attr-defined]
    # A mistyped number (its check digit fails) is no identifier: missing, never a wrong id.
    assert extract(UK_LETTER.replace("5919", "5918"))[0] == "missing-field"
    # A local record number stays the patient id; the national number ranks below it (no conflict).
    reason, _, medical = extract(UK_LETTER.replace("NHS Number", "Hospital No: RBH55661\nNHS Number"))
    assert (reason, medical.patient_id) == (None, "RBH55661")  # type: ignore[attr-defined]
    assert valid_national_id("9434765919")
    assert not valid_national_id("4857773456")


def test_the_reporting_clinician_is_the_provider_not_the_referring_one() -> None:
    head = "RADIOLOGY REPORT\nPatient: Mei-Ling Chen\nMRN: 20045571\nDOB: 10/19/1964\n"
    report = head + "REFERRING PHYSICIAN: Robert Alvarez, MD\nImpression: nodule (R91.1)\n"
    dictated = report + "Dictated by: Sarah Lindqvist, MD\n"
    assert extract(dictated)[2].provider == "Sarah Lindqvist, MD"  # type: ignore[attr-defined]
    signed = report + "\nSincerely,\nDr. Arjun Mehta\n"
    assert extract(signed)[2].provider == "Dr. Arjun Mehta"  # type: ignore[attr-defined]
    # A referral, whose only clinician is the referrer, keeps the referrer.
    assert extract(report)[2].provider == "Robert Alvarez, MD"  # type: ignore[attr-defined]


def test_a_parents_birth_date_on_an_accompanied_by_line_is_not_the_patients() -> None:
    text = (
        "WELL CHILD VISIT\nPatient Name: Liam A. Carter\nMRN: 3302187\nDOB: 05/04/2020\n"
        "Accompanied by: mother, Jessica Carter (DOB 03/11/1991)\nAssessment: routine exam (Z00.129)\n"
    )
    reason, _, medical = extract(text)
    assert reason is None
    assert medical.date_of_birth.isoformat() == "2020-05-04"  # type: ignore[attr-defined]


def test_a_generational_suffix_ends_the_name_and_does_not_make_a_conflict() -> None:
    text = "Name: O'Sullivan, Brendan Jr.\nMRN: 100442\nDOB: 12/31/1980\nRE: Brendan O'Sullivan  MRN 100442\n"
    reason, _, medical = extract(text + "Dx: ankle sprain (S93.402A)\n")
    assert reason is None
    assert medical.patient_name == "Brendan O'Sullivan Jr"  # type: ignore[attr-defined]


NOTE = "Follow-up visit\nMRN: 5098812\nDOB: 02/14/1956\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "A/P:\nHe is currently taking\nMetformin 500mg BID and lisinopril 10 mg PO daily, and uses atorvastatin"
            " 40mg qhs.\nWill add empagliflozin 10 mg daily.\n",
            ["Metformin 500mg BID", "lisinopril 10 mg PO daily", "atorvastatin 40mg qhs", "empagliflozin 10 mg daily"],
        ),
        (
            "Patient is currently taking warfarin 5 mg daily (INR goal 2-3), digoxin 0.125 mg daily and\n"
            "furosemide 40 mg every morning. He is no longer taking potassium chloride 20 mEq.\n",
            ["warfarin 5 mg daily", "digoxin 0.125 mg daily", "furosemide 40 mg every morning"],
        ),
        # The same list after "was on" is history: none of it.
        ("He was on warfarin 5 mg daily and\ndigoxin 0.125 mg daily until 2022.\n", []),
        # A stopped drug and a sentence under a medication heading are no medications.
        (
            "Medication changes:\nStart Trelegy Ellipta 92/55/22 micrograms one inhalation once daily\n"
            "Stop Seretide 250 mcg one puff twice daily\n\nHis spirometry shows FEV1 48% predicted.\n",
            ["Trelegy Ellipta 92/55/22 micrograms one inhalation once daily"],
        ),
    ],
)
def test_medication_lists_in_prose_one_item_per_drug(body: str, expected: list[str]) -> None:
    reason, _, medical = extract(NOTE + body)
    assert reason is None
    assert medical.medications == expected  # type: ignore[attr-defined]


def test_a_negation_before_a_comma_ends_the_finding_before_it() -> None:
    text = NOTE + "A/P:\nType 2 DM with neuropathy ruled out, A1c above goal - E11.9.\nPneumonia (J18.9) ruled out.\n"
    assert extract(text)[2].diagnosis_codes == ["E11.9"]  # type: ignore[attr-defined]


def test_an_operative_notes_postoperative_diagnosis_supersedes_the_preoperative_one() -> None:
    head = "OPERATIVE REPORT\nMedical Record Number: SC-5540218\nDate of Birth: 01/17/1969\n"
    pre = "PREOPERATIVE DIAGNOSIS: Symptomatic cholelithiasis (K80.20).\n"
    post = "POSTOPERATIVE DIAGNOSIS: Chronic cholecystitis with cholelithiasis (K80.10).\n"
    assert extract(head + pre + post)[2].diagnosis_codes == ["K80.10"]  # type: ignore[attr-defined]
    assert extract(head + pre)[2].diagnosis_codes == ["K80.20"]  # type: ignore[attr-defined]  # the only one
    same = "POSTOPERATIVE DIAGNOSIS: Same.\n"  # the preoperative diagnosis stands
    assert extract(head + pre + same)[2].diagnosis_codes == ["K80.20"]  # type: ignore[attr-defined]
    section = (
        "Pre-op Diagnosis:\n1. Symptomatic cholelithiasis (K80.20)\n\nPost-op Diagnosis:\n1. Cholecystitis (K81.1)\n"
    )
    assert extract(head + section)[2].diagnosis_codes == ["K81.1"]  # type: ignore[attr-defined]
