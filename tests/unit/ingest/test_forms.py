"""Forms as practices send them: Word referral forms built of tables, fillable PDF forms, and day-first dates."""

from __future__ import annotations

import io
from datetime import date

import pytest

from clinicflow.ingest.extractors import DocumentText, RulesExtractor
from clinicflow.ingest.fields import numeric_date_order, parse_any_date
from clinicflow.ingest.forms import docx_text, table_lines
from clinicflow.ingest.medical import Medical
from clinicflow.ingest.text import pdf_text
from tests.support.pdf_images import pdf_form


def extract(text: str) -> Medical:
    (out,) = RulesExtractor().extract([DocumentText("d", "s", text)])
    assert out.medical is not None, (out.reason, out.message)
    return out.medical


def referral_docx() -> bytes:
    import docx

    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "Northside Family Practice  |  Tel 01632 960123"
    document.add_heading("Referral for Specialist Consultation", 1)
    form = document.add_table(rows=0, cols=2)
    for label, value in (
        ("Patient Name", "Amelia Fitzgerald"),
        ("Date of Birth", "14/03/1972"),
        ("MRN", "NFP-220931"),
        ("Referral Date", "02/10/2024"),
        ("Referring Physician", "Dr. Kofi Mensah"),
    ):
        cells = form.add_row().cells
        cells[0].text, cells[1].text = label, value
    document.add_paragraph("Reason for referral: persistent atrial fibrillation (I48.19) despite rate control.")
    medications = document.add_table(rows=0, cols=3)
    for row in (("Medication", "Dose", "Frequency"), ("Bisoprolol", "5 mg", "daily"), ("Apixaban", "5 mg", "BID")):
        cells = medications.add_row().cells
        for cell, value in zip(cells, row, strict=True):
            cell.text = value
    document.add_paragraph("Kind regards,")
    document.add_paragraph("Dr. Kofi Mensah")
    document.sections[0].footer.paragraphs[0].text = "Page 1 of 1"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_a_word_referral_form_reads_its_table_cells_as_labelled_values_in_reading_order() -> None:
    text = docx_text(referral_docx())
    lines = text.splitlines()
    assert lines[0] == "Northside Family Practice  |  Tel 01632 960123"  # the letterhead first
    assert lines[2:4] == ["Patient Name: Amelia Fitzgerald", "Date of Birth: 14/03/1972"]
    assert lines.index("Bisoprolol  5 mg  daily") < lines.index("Kind regards,")  # tables where they stand
    assert lines[-1] == "Page 1 of 1"
    medical = extract(text)
    assert (medical.patient_id, medical.patient_name) == ("NFP-220931", "Amelia Fitzgerald")
    # A UK form: 14/03/1972 says its dates are day first, so 02/10/2024 is 2 October, not 10 February.
    assert (medical.date_of_birth, medical.encounter_date) == (date(1972, 3, 14), date(2024, 10, 2))
    assert medical.medications == ["Bisoprolol 5 mg daily", "Apixaban 5 mg BID"]


def test_form_tables_pair_labels_with_values_and_other_tables_stay_rows() -> None:
    assert table_lines([["Patient:", "Ann Lee", "DOB", "1972-03-14"], ["MRN #", "A-1", "Sex", ""]]) == [
        "Patient: Ann Lee    DOB: 1972-03-14",
        "MRN # A-1",
    ]
    assert table_lines([["Patient Name", "DOB", "MRN"], ["Ann Lee", "14/03/1972", "A-1"]]) == [
        "Patient Name: Ann Lee",
        "DOB: 14/03/1972",
        "MRN: A-1",
    ]
    labs = [["Test", "Result", "Units"], ["HbA1c", "6.9", "%"], ["LDL", "131", "mg/dL"]]
    assert table_lines(labs) == ["Test  Result  Units", "HbA1c  6.9  %", "LDL  131  mg/dL"]


def test_a_fillable_pdf_forms_values_are_read_from_its_fields() -> None:
    printed = "NORTHSIDE FAMILY PRACTICE - REFERRAL FORM\nPatient Name:\nDate of Birth:\nMRN:\nReferral Date:\nReason:"
    data = pdf_form(
        printed,
        [
            ("form1[0].Page1[0].PatientName[0]", "Amelia Fitzgerald", None),  # a LiveCycle form's name
            ("Text2", "03/14/1972", "Date of Birth"),  # a generic name, the tooltip says what it is
            ("mrn", "NFP-220931", None),
            ("referral_date", "10/02/2024", None),
            ("Reason", "Persistent AF (I48.19)\r\nOn apixaban 5 mg BID", None),
            ("Notes", "", None),
        ],
    )
    result = pdf_text(data)
    assert result.error is None
    assert result.text is not None
    assert "Patient Name: Amelia Fitzgerald\nDate of Birth: 03/14/1972\nmrn: NFP-220931" in result.text
    assert "Reason:\nPersistent AF (I48.19)\nOn apixaban 5 mg BID" in result.text
    assert "Notes" not in result.text.split("\f")[-1]
    medical = extract(result.text)
    assert (medical.patient_id, medical.patient_name) == ("NFP-220931", "Amelia Fitzgerald")
    assert (medical.date_of_birth, medical.encounter_date) == (date(1972, 3, 14), date(2024, 10, 2))
    assert medical.diagnosis_codes == ["I48.19"]


@pytest.mark.parametrize(
    ("text", "order"),
    [
        ("DOB: 14/03/1972  Seen: 02/10/2024", "dmy"),
        ("DOB: 03/14/1972  Seen: 02/10/2024", "mdy"),
        ("Seen: 02/10/2024", "mdy"),  # nothing says otherwise: the US default
        ("DOB: 14/03/1972  Seen: 03/14/2024", None),  # both conventions in one document
        ("DOB 23.04.1961, seen 09.02.2024", "dmy"),
    ],
)
def test_a_documents_numeric_dates_follow_the_order_its_unambiguous_dates_show(text: str, order: str | None) -> None:
    assert numeric_date_order(text) == order


def test_day_first_documents_read_day_first_and_a_mixed_one_reads_only_unambiguous_dates() -> None:
    assert parse_any_date("02/10/2024", "dmy") == date(2024, 10, 2)
    assert parse_any_date("09.02.1971", "dmy") == date(1971, 2, 9)
    assert parse_any_date("14/03/61", "dmy") == date(1961, 3, 14)
    assert parse_any_date("02/10/2024", None) is None
    assert parse_any_date("14/03/1972", None) == date(1972, 3, 14)
    assert parse_any_date("03/14/1972", None) == date(1972, 3, 14)
    mixed = extract("Patient: Ann Lee\nMRN: A-1\nDOB: 14/03/1972\nVisit Date: 02/10/2024\nLetter dated 03/14/2024\n")
    assert (mixed.date_of_birth, mixed.encounter_date) == (date(1972, 3, 14), None)
    uk_export = "MRN,Patient Name,DOB,Collected\nA-1,Ann Lee,14/03/1972,02/10/2024\n"
    assert extract(uk_export).encounter_date == date(2024, 10, 2)


def test_a_models_numeric_dates_are_read_in_the_documents_order() -> None:
    from clinicflow.ingest.extractors import validate_output

    uk = "Patient: Ann Lee\nMRN: A-1\nDOB: 14/03/1972\nSeen: 02/10/2024\n"
    answer = {"patient_id": "A-1", "date_of_birth": "14/03/1972", "encounter_date": "02/10/2024"}
    out = validate_output("d", answer, text=uk)
    assert out.medical is not None
    assert (out.medical.date_of_birth, out.medical.encounter_date) == (date(1972, 3, 14), date(2024, 10, 2))
    us = uk.replace("14/03/1972", "03/14/1972")
    out = validate_output("d", {**answer, "date_of_birth": "03/14/1972"}, text=us)
    assert out.medical is not None
    assert out.medical.encounter_date == date(2024, 2, 10)
    mixed = uk + "Letter of 03/14/2024\n"
    out = validate_output("d", answer, text=mixed)
    assert (out.reason, out.message) == ("invalid-field", "encounter_date: value_error")


def test_an_rtf_forms_table_reads_as_labelled_values() -> None:
    from clinicflow.ingest.text import rtf_text

    row = r"\trowd\cellx3000\cellx8000\intbl {label}\cell {value}\cell\row" + "\n"
    rtf = (
        r"{\rtf1\ansi\deff0{\fonttbl{\f0 Calibri;}}" + "\n" + r"\pard Referral Form\par" + "\n"
        + "".join(row.format(label=k, value=v) for k, v in (("Patient Name", "Amelia Fitzgerald"), ("MRN", "NFP-1")))
        + r"\pard Reason: AF (I48.19)\par" + "\n}"
    )  # fmt: skip
    text = rtf_text(rtf)
    assert text.splitlines() == [
        "Referral Form",
        "Patient Name: Amelia Fitzgerald",
        "MRN: NFP-1",
        "Reason: AF (I48.19)",
    ]
    assert (extract(text).patient_name, extract(text).patient_id) == ("Amelia Fitzgerald", "NFP-1")


def test_a_two_column_table_of_drugs_is_data_not_a_form() -> None:
    drugs = [["Apixaban", "5 mg twice daily"], ["Bisoprolol", "5 mg daily"]]
    assert table_lines(drugs) == ["Apixaban  5 mg twice daily", "Bisoprolol  5 mg daily"]
    text = "MRN: A-1\nCurrent medications:\n" + "\n".join(table_lines(drugs)) + "\n"
    assert extract(text).medications == ["Apixaban 5 mg twice daily", "Bisoprolol 5 mg daily"]
