"""Ingestion test inputs shared by the unit and integration tests: a referral letter, a PNG, a file tree."""

from __future__ import annotations

from pathlib import Path

REFERRAL = """Referral letter
Patient: {name}
MRN: {mrn}
DOB: 03/14/1961
Date of Service: 2024-05-{day:02d}
Provider: Dr. Alan Grant, DDS

Diagnosis: E11.9 type 2 diabetes; K02.52 dental caries
Procedures: D2391, 99213
Medications:
- Metformin 500 mg
- Amoxicillin 500 mg

Summary: Caries on tooth 30, restored. Follow up in six months.
"""

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


_GIVEN = ("Ada", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hal", "Ivy", "Jon")
_FAMILY = ("Adler", "Brook", "Cole", "Drake", "Ellis", "Frost", "Grey", "Hale", "Irwin", "Joyce")


def patient_name(n: int) -> str:
    """A made-up name per number (a name is words, never "Patient 3")."""
    return f"{_GIVEN[n % 10]} {_FAMILY[(n // 10) % 10]}"


def referral(n: int) -> bytes:
    return REFERRAL.format(name=patient_name(n), mrn=f"MRN{n:06d}", day=1 + n % 28).encode()


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
