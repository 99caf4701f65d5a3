"""Bytes that are text, in the encodings clinic files come in: UTF-8, UTF-16 with a BOM, else a Western code page.

Shared by ingestion (documents) and processing (data files): one way to tell a file's encoding.
"""

from __future__ import annotations

# What a clinic's non-UTF-8 files are in practice: charset-normalizer picks among these, so that a
# Western Latin-1 / Windows-1252 note is never read as a Central European code page (ñ as ń).
SINGLE_BYTE_ENCODINGS = ("cp1252", "latin_1", "iso8859_15", "mac_roman")


def decode_bytes(data: bytes) -> tuple[str, str] | None:
    """(text, encoding) of bytes that are text in any common encoding; None for binary."""
    if not data:
        return "", "utf-8"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            return None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:
        return None
    from charset_normalizer import from_bytes

    best = from_bytes(data[:65536], cp_isolation=list(SINGLE_BYTE_ENCODINGS)).best()
    if best is None:
        return None
    encoding = best.encoding
    try:
        return data.decode(encoding), encoding
    except (UnicodeDecodeError, LookupError):
        return None


def text_encoding(head: bytes, *, cut: bool = False) -> str | None:
    """The encoding of a file starting with ``head`` (None: not text); ``cut``: ``head`` may end inside a character."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if cut and len(head) > 3:
        head = head[:-3]  # a UTF-8 character is at most 4 bytes: drop any partial one
    decoded = decode_bytes(head)
    return decoded[1] if decoded else None
