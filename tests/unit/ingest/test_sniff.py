"""MIME type by content and by extension (pure functions)."""

from __future__ import annotations

import pytest

from clinicflow.ingest.sniff import decode_text, mime_by_extension, sniff_mime


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "application/pdf"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"\x00" * 128 + b"DICM" + b"\x02\x00", "application/dicom"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"\x1f\x8b\x08\x00", "application/gzip"),
        (b'{"mrn": "1", "dx": ["E11.9"]}', "application/json"),
        (b"<?xml version='1.0'?><ClinicalDocument/>", "application/xml"),
        (b"MSH|^~\\&|APP|FAC\rPID|1||7\r", "x-application/hl7-v2+er7"),
        (b"mrn,date,code\n1,2024-01-01,E11.9\n2,2024-01-02,K02.52\n", "text/csv"),
        (b"Referral letter\nPatient: A\n", "text/plain"),
        ("Überweisung\n".encode("utf-16"), "text/plain"),
        (b"\x00\x01\x02\x03binary", "application/octet-stream"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "image/heic"),  # an iPhone's photo
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "application/octet-stream"),  # an MP4 video
        (b"", "text/plain"),
        (b"Received: from mx\r\n by mx2\r\nFrom: a@b.example\r\nSubject: hi\r\n\r\nbody", "message/rfc822"),
        (b"From a@b Mon Nov 30 10:00:00 2026\nMIME-Version: 1.0\nFrom: a@b\n\n\xe9t\xc3\xa9", "message/rfc822"),
        # A memo typed with mail-like labels is not a message file: no header a mail system writes.
        (b"From: Dr Lee\nTo: Front desk\nSubject: Referral\n\nPatient: A\n", "text/plain"),
        (b"Patient: Ana Gomez\nMRN: 12345\nMessage-ID: x\n", "text/plain"),  # no blank line: no header block
    ],
)
def test_sniff_by_content(data: bytes, expected: str) -> None:
    assert sniff_mime(data, decode_text(data)) == expected


def test_text_detection() -> None:
    assert decode_text("Überweisung".encode("utf-16")) == "Überweisung"
    assert decode_text(b"caf\xc3\xa9") == "café"
    assert decode_text("Consult note: René Côté, Muñoz".encode("latin-1")) == "Consult note: René Côté, Muñoz"
    assert decode_text("Visit \u2013 \u201cmild\u201d".encode("cp1252")) == "Visit \u2013 \u201cmild\u201d"
    assert decode_text(b"a\x00b") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/letter.txt", "text/plain"),
        ("scan.PDF", "application/pdf"),
        ("x.hl7", "x-application/hl7-v2+er7"),
        ("img.dcm", "application/dicom"),
        ("data.csv", "text/csv"),
        ("noext", None),
    ],
)
def test_mime_by_extension(name: str, expected: str | None) -> None:
    assert mime_by_extension(name) == expected


def test_hl7_messages_in_their_mllp_frames_read_as_hl7() -> None:
    message = b"MSH|^~\\&|LAB|NORTH|||20240302||ORU^R01|1|P|2.5.1\rPID|1||L-448812^^^MRN||RAHMAN^AISHA\r"
    archive = (b"\x0b" + message + b"\x1c\r") * 2  # an interface engine's archive: VT message FS CR, twice
    text = decode_text(archive)
    assert text == ((message + b"\r") * 2).decode()
    assert sniff_mime(archive, text) == "x-application/hl7-v2+er7"
    assert decode_text(b"\x0bnot hl7\x1c\r") is None  # other text with those bytes is still binary
