"""Demo files for the ingestion flow: a few made-up clinical documents (no real patient) in a folder.

Good referral letters, a lab result, an HL7 message, a PNG "scan" (binary:
staged as base64, not extracted) and one note without a patient identifier
(dead-lettered at ``extract`` with ``missing-field``), so a demo run shows
every path. Written idempotently: unchanged files are skipped on the next run.
"""
from __future__ import annotations

from pathlib import Path

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
    ("Ada Demo", "DEMO0001", "1961-03-14", "2024-05-02", "Dr. Alan Grant, DDS", "K02.52 caries; E11.9 diabetes",
     "D2391, D0220", "- Metformin 500 mg\n- Amoxicillin 500 mg", "Caries on tooth 30, restored."),
    ("Ben Sample", "DEMO0002", "1975-11-02", "2024-06-11", "Dr. Ellie Sattler", "K05.10 gingivitis",
     "D1110", "- Chlorhexidine rinse", "Gingivitis; cleaning done, recall in three months."),
    ("Cara Example", "DEMO0003", "1990-01-30", "2024-07-19", "Dr. Ian Malcolm, DMD", "S02.5XXA fractured tooth",
     "D7140, 99213", "- Ibuprofen 400 mg", "Fractured molar extracted without complication."),
)

PNG_SCAN = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8

DEMO_FILES: dict[str, bytes] = {
    **{f"referrals/2024/letter-{p[1].lower()}.txt": _LETTER.format(
        name=p[0], mrn=p[1], dob=p[2], dos=p[3], provider=p[4], dx=p[5], px=p[6], meds=p[7], summary=p[8]).encode()
       for p in _PEOPLE},
    "labs/2024/a1c-demo0001.txt": b"Lab result\nPatient ID: DEMO0001\nExam Date: 2024-05-01\n"
                                  b"Physician: Dr. Alan Grant\nDiagnosis: E11.9\nSummary: HbA1c 7.1 %.\n",
    "hl7/adt-demo0002.hl7": b"MSH|^~\\&|CLINIC|DEMO|||202406110830||ADT^A04|1|P|2.5\rPID|1||DEMO0002||Sample^Ben\r",
    "scans/2024/scan-demo0003.png": PNG_SCAN,
    "referrals/2024/note-without-id.txt": b"Phone note: patient called to move the appointment.\n",
}

DEMO_PATTERN = "**/*"


def write_demo_files(folder: Path) -> int:
    """Write the demo files under ``folder`` (only those missing or different); returns how many there are."""
    for name, data in DEMO_FILES.items():
        path = folder / name
        if path.is_file() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(DEMO_FILES)
