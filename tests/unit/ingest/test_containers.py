"""ZIP archives in an inbox (a portal's download of one patient's records): each file read by its own format."""

from __future__ import annotations

import io
import zipfile

import pytest

from clinicflow.ingest import containers
from clinicflow.ingest.sniff import decode_text, sniff_mime
from clinicflow.ingest.text import document_text
from clinicflow_dev.ingest_demo import pdf_with_text

LETTER = "Patient: Sofia Marchetti\nDate of birth: 1988-07-02\nPatient ID: LO-551903\n" + "Plan: recall. " * 20
HL7 = "MSH|^~\\&|LAB|NORTH|||20240302||ORU^R01|1|P|2.5.1\rPID|1||L-448812^^^MRN||RAHMAN^AISHA||19750304|F\r"


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def _read(data: bytes) -> tuple[str | None, str | None]:
    mime = sniff_mime(data, decode_text(data))
    assert mime == "application/zip"
    result = document_text(data, mime)
    return result.text, result.error


def test_a_portal_download_is_read_file_by_file_and_its_metadata_left_out() -> None:
    text, error = _read(
        _zip(
            {
                "records/referral.pdf": pdf_with_text(LETTER),
                "records/notes.txt": b"Visit note: bleeding gums on brushing.\n",
                "__MACOSX/records/._referral.pdf": b"\x00\x05\x16\x07 resource fork",
                "records/.DS_Store": b"\x00\x00\x00\x01Bud1",
                "records/image.dcm": b"\x00" * 128 + b"DICM" + b"\x02\x00" * 8,
            }
        )
    )
    assert text is not None
    assert "Patient ID: LO-551903" in text
    assert "bleeding gums" in text
    assert "resource fork" not in text
    assert error == "file 'records/image.dcm': no text layer for application/dicom"


def test_one_structured_file_is_the_whole_text_and_archives_nest_to_a_bound() -> None:
    text, _ = _read(_zip({"result.hl7": HL7.encode(), "readme.txt": b"MRN 99999999 in our system"}))
    assert text == HL7
    nested = _zip({"letter.txt": LETTER.encode()})
    for _ in range(containers.MAX_DEPTH + 1):  # the outermost archive and three inside it are read
        nested = _zip({"inner.zip": nested})
    text, error = _read(nested)
    assert text is None
    assert error is not None
    assert "nested more than 3 deep" in error


def test_an_archive_too_large_unpacked_or_encrypted_is_named_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "ARCHIVE_MAX_TOTAL_BYTES", 1000)
    text, error = _read(_zip({"zeros.txt": b"0" * 5000}))  # 5,000 bytes from a few dozen: a bomb in small
    assert text is None
    assert error == "file 'archive': 5000 bytes unpacked, more than 1000: not read"
    monkeypatch.undo()
    data = bytearray(_zip({"letter.txt": LETTER.encode()}))
    for offset in (6, data.rfind(b"PK\x01\x02") + 8):  # the encryption flag in the local and central headers
        data[offset] |= 0x1
    text, error = _read(bytes(data))
    assert text is None
    assert error == "file 'letter.txt': encrypted"
