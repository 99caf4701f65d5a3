"""MIME type by content (magic bytes and a text check) and by file extension; both are recorded."""

from __future__ import annotations

import json
import mimetypes
from pathlib import PurePosixPath

from clinicflow.ingest.mail import looks_like_message

# (offset, magic bytes, MIME type), checked in order.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (128, b"DICM", "application/dicom"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"{\\rtf", "application/rtf"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
)

# A HEIF file's type box and brand (offset 4): iPhones' photos since iOS 11.
HEIF_BRANDS = frozenset(b"ftyp" + brand for brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1"))

_EXTRA_EXTENSIONS = {
    ".hl7": "x-application/hl7-v2+er7",
    ".dcm": "application/dicom",
    ".md": "text/markdown",
    ".heic": "image/heic",
    ".heif": "image/heic",
}


def mime_by_extension(name: str) -> str | None:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _EXTRA_EXTENSIONS:
        return _EXTRA_EXTENSIONS[suffix]
    return mimetypes.guess_type(name, strict=False)[0]


_MLLP_STARTS = ("\x0bMSH|", "\x0bFHS|", "\x0bBHS|")


def decode_text(data: bytes) -> str | None:
    """The content as text when it is text (UTF-8, UTF-16 with BOM, or the single-byte encoding
    charset-normalizer detects: cp1252, Latin-1...; no control bytes, HL7's MLLP frame bytes left out), else None."""
    from clinicflow.core.text_encoding import decode_bytes

    if any(data[offset : offset + len(magic)] == magic for offset, magic, _ in _MAGIC if magic != b"{\\rtf"):
        return None
    if data[4:12] in HEIF_BRANDS:
        return None
    decoded = decode_bytes(data)
    if decoded is None:
        return None
    text = decoded[0]
    if text.lstrip(" \r\n").startswith(_MLLP_STARTS):
        # An interface engine's archive keeps each HL7 message in its MLLP frame (VT ... FS CR): transport bytes.
        text = text.replace("\x0b", "").replace("\x1c", "")
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f\v\x1b")
    return text if controls == 0 else None


def sniff_mime(data: bytes, text: str | None) -> str:
    """The MIME type the bytes show, whatever the file is called."""
    for offset, magic, mime in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime
    if data[4:12] in HEIF_BRANDS:
        return "image/heic"
    if looks_like_message(data):  # before the text check: a message's 8-bit parts may mix encodings
        return "message/rfc822"
    if text is None:
        return "application/octet-stream"
    stripped = text.lstrip()
    if stripped.startswith(("MSH|", "FHS|", "BHS|")):  # a message or a batch file
        return "x-application/hl7-v2+er7"
    if stripped.startswith(("{", "[")):
        try:
            json.loads(text)
            return "application/json"
        except ValueError:
            pass
    if stripped.startswith("<?xml"):
        return "application/xml"
    head = stripped[:1024].lower()
    if head.startswith(("<!doctype html", "<html")) or ("<html" in head and "<body" in stripped[:4096].lower()):
        return "text/html"
    first = stripped.split("\n", 1)[0]
    if first.count(",") >= 2 and "\n" in stripped and stripped.split("\n", 2)[1].count(",") == first.count(","):
        return "text/csv"
    return "text/plain"
