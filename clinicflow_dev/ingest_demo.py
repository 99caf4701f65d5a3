"""Demo files for the ingestion flow: a few made-up clinical documents (no real patient) in a folder.

Good referral letters, a lab result, an HL7 message, a referral as a PDF with
a text layer, a faxed referral as a scanned PNG (read by OCR) and one phone
note that is not a clinical document (dead-lettered at ``extract`` with
``not-clinical``), so a demo run shows every path. Written idempotently (the
PDF and the scan render the same bytes every time): unchanged files are
skipped on the next run.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_LETTER = """Referral letter
Patient: {name}
MRN: {mrn}
DOB: {dob}
Date of Service: {dos}
Provider: {provider}

Diagnosis: {dx}
Procedures: {px}
Medications:
{meds}

Summary: {summary}
"""

_PEOPLE = (
    (
        "Ada Demo",
        "DEMO0001",
        "1961-03-14",
        "2024-05-02",
        "Dr. Alan Grant, DDS",
        "K02.52 caries; E11.9 diabetes",
        "D2391, D0220",
        "- Metformin 500 mg\n- Amoxicillin 500 mg",
        "Caries on tooth 30, restored.",
    ),
    (
        "Ben Sample",
        "DEMO0002",
        "1975-11-02",
        "2024-06-11",
        "Dr. Ellie Sattler",
        "K05.10 gingivitis",
        "D1110",
        "- Chlorhexidine rinse",
        "Gingivitis; cleaning done, recall in three months.",
    ),
    (
        "Cara Example",
        "DEMO0003",
        "1990-01-30",
        "2024-07-19",
        "Dr. Ian Malcolm, DMD",
        "S02.5XXA fractured tooth",
        "D7140, 99213",
        "- Ibuprofen 400 mg",
        "Fractured molar extracted without complication.",
    ),
)

_FAX = """FAX - REFERRAL FOR SLEEP STUDY
Patient: Dana Demo
MRN: DEMO0004
DOB: 06/12/1961
Referral Date: 04/16/2024
Referring Physician: Dr. Alice Monroe

Reason for referral: obstructive sleep apnea (G47.33).
Requested: polysomnography CPT 95810.
Medications: Losartan 50 mg daily
"""

_PDF_LETTER = """Referral letter
Patient: Eli Demo
MRN: DEMO0005
DOB: 4 March 1975
Date of Service: March 4, 2024
Provider: Dr. Ellie Sattler

Diagnosis: K05.10 gingivitis
Procedures: D1110, D0120
Medications: Chlorhexidine 0.12% rinse twice daily
"""


def render_page(text: str, width: int = 1275, size: int = 30) -> Any:
    """A grayscale 'scan' of a page of text (about 150 dpi at letter width), with Pillow's bundled font."""
    from PIL import Image, ImageDraw, ImageFont

    lines = text.strip("\n").split("\n")
    image = Image.new("L", (width, max(600, 120 + int(len(lines) * size * 1.6))), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size)
    for i, line in enumerate(lines):
        draw.text((70, 60 + i * int(size * 1.6)), line, fill=20, font=font)
    return image


def png_scan(text: str) -> bytes:
    out = io.BytesIO()
    render_page(text).save(out, "PNG")
    return out.getvalue()


def pdf_with_text(text: str) -> bytes:
    """A one-page PDF with a text layer (fpdf2), the same bytes for the same text."""
    from fpdf import FPDF

    pdf = FPDF(format="letter")
    pdf.set_creation_date(datetime(2024, 1, 1, tzinfo=UTC))
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for line in text.split("\n"):
        pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def demo_files() -> dict[str, bytes]:
    """The demo documents by relative path."""
    return {
        **DEMO_FILES,
        "scans/2024/fax-demo0004.png": png_scan(_FAX),
        "referrals/2024/letter-demo0005.pdf": pdf_with_text(_PDF_LETTER),
    }


DEMO_FILES: dict[str, bytes] = {
    **{
        f"referrals/2024/letter-{p[1].lower()}.txt": _LETTER.format(
            name=p[0], mrn=p[1], dob=p[2], dos=p[3], provider=p[4], dx=p[5], px=p[6], meds=p[7], summary=p[8]
        ).encode()
        for p in _PEOPLE
    },
    "labs/2024/a1c-demo0001.txt": b"Lab result\nPatient ID: DEMO0001\nExam Date: 2024-05-01\n"
    b"Physician: Dr. Alan Grant\nDiagnosis: E11.9\nSummary: HbA1c 7.1 %.\n",
    "hl7/adt-demo0002.hl7": b"MSH|^~\\&|CLINIC|DEMO|||202406110830||ADT^A04|1|P|2.5\rPID|1||DEMO0002||Sample^Ben\r",
    "referrals/2024/note-without-id.txt": b"Phone note: patient called to move the appointment.\n",
}

DEMO_PATTERN = "**/*"


def write_demo_files(folder: Path) -> int:
    """Write the demo files under ``folder`` (only those missing or different); returns how many there are."""
    files = demo_files()
    for name, data in files.items():
        path = folder / name
        if path.is_file() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(files)
