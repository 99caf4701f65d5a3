"""Documents that hold documents: an e-mail's attachments, a ZIP archive's files, each read by its own format.

Their text is the parts' text in order (an e-mail's subject and body first), so a covering note and the
letter it carries are one document. One structured part (an HL7, FHIR, C-CDA or CSV file) is the whole text:
its structure is read exactly, and the words around it would make it free text. A part with no text (an
image of nothing, a DICOM file, unknown bytes) is named in the result's ``error``; the others are read.
A ZIP is bounded before anything is read: its member count, each member's size and the total the members
declare (a "zip bomb" declares little and inflates much: reading stops at the declared size).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath

from clinicflow.ingest.text import (
    IMAGE_MIMES,
    MESSAGE_MIME,
    TEXT_MIMES,
    TextResult,
    document_text,
    html_text,
    is_docx,
    mean_confidence,
)

# What a part may be to be read; an archive or message inside another, up to MAX_DEPTH deep.
_READABLE = frozenset((*TEXT_MIMES, "text/html", "application/rtf", "application/pdf", *IMAGE_MIMES))
_CONTAINERS = frozenset((MESSAGE_MIME, "application/zip"))
MAX_DEPTH = 3
ARCHIVE_MAX_MEMBERS = 500
ARCHIVE_MAX_MEMBER_BYTES = 64 << 20
ARCHIVE_MAX_TOTAL_BYTES = 256 << 20
Part = tuple[str, bytes | None, str | None]  # (name, its bytes or None, why it was not read)


def message_text(data: bytes, depth: int = 0) -> TextResult:
    """An e-mail's subject, body and attached files' text, in order (a forwarded message's too)."""
    from clinicflow.ingest.mail import message_parts

    parts = message_parts(data)
    texts = [f"Subject: {parts.subject}"] if parts.subject else []
    if parts.body and parts.body.strip():
        body = parts.body.replace("\r\n", "\n")  # SMTP's line ends
        texts.append(html_text(body) if parts.body_is_html else body.strip())
    return _compose(texts, ((name, payload, None) for name, payload in parts.attachments), depth, "attachment")


def archive_text(data: bytes, depth: int = 0) -> TextResult:
    """A ZIP archive's files' text, in the archive's order (folders, hidden files and macOS metadata left out)."""
    import io

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        return TextResult(None, error=f"not a readable ZIP archive ({exc})")
    with archive:
        return _compose([], _members(archive), depth, "file")


def _members(archive: zipfile.ZipFile) -> Iterator[Part]:
    """(name, bytes or None, why not) of each file, one in memory at a time."""
    files = [i for i in archive.infolist() if not i.is_dir() and not _hidden(i.filename)]
    if len(files) > ARCHIVE_MAX_MEMBERS:
        yield "archive", None, f"{len(files)} files, more than {ARCHIVE_MAX_MEMBERS}: not read"
        return
    declared = sum(i.file_size for i in files)
    if declared > ARCHIVE_MAX_TOTAL_BYTES:
        yield "archive", None, f"{declared} bytes unpacked, more than {ARCHIVE_MAX_TOTAL_BYTES}: not read"
        return
    for info in files:
        if info.flag_bits & 0x1:
            yield info.filename, None, "encrypted"
        elif info.file_size > ARCHIVE_MAX_MEMBER_BYTES:
            yield info.filename, None, f"{info.file_size} bytes, more than {ARCHIVE_MAX_MEMBER_BYTES}"
        else:
            try:
                with archive.open(info) as member:
                    yield info.filename, member.read(info.file_size + 1)[: info.file_size], None
            except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
                yield info.filename, None, f"unreadable ({type(exc).__name__}: {exc})"


def _hidden(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1:] == ("Thumbs.db",)


def _compose(texts: list[str], parts: Iterable[Part], depth: int, what: str) -> TextResult:
    """``texts`` (a message's subject and body), then each part's text; errors name the part."""
    from clinicflow.ingest.sniff import decode_text, sniff_mime
    from clinicflow.ingest.structured import detect

    results: list[TextResult] = []
    errors: list[str] = []
    for name, payload, problem in parts:
        if payload is None:
            errors.append(f"{what} {name!r}: {problem}")
            continue
        mime = sniff_mime(payload, decode_text(payload))
        if mime in _CONTAINERS and depth >= MAX_DEPTH:
            errors.append(f"{what} {name!r}: nested more than {MAX_DEPTH} deep")
            continue
        if mime == MESSAGE_MIME:
            result = message_text(payload, depth + 1)
        elif mime == "application/zip":
            result = document_text(payload, mime) if is_docx(payload) else archive_text(payload, depth + 1)
        elif mime in _READABLE:
            result = document_text(payload, mime)
        else:
            errors.append(f"{what} {name!r}: no text layer for {mime}")
            continue
        if result.text and result.text.strip():
            results.append(result)
            if result.error:  # a nested message's or archive's own unread parts
                errors.append(f"{what} {name!r}: {result.error}")
        else:
            errors.append(f"{what} {name!r}: {result.error or 'no text'}")
    structured = [r for r in results if detect(r.text or "") is not None]
    if len(structured) == 1:
        results, texts = structured, []
    methods = {r.method for r in results if r.method} | ({"native"} if texts else set())
    confidences = [r.ocr_confidence for r in results if r.ocr_confidence is not None]
    text = "\n\f\n".join([*texts, *(r.text or "" for r in results)])
    return TextResult(
        text if text.strip() else None,
        "mixed" if len(methods) > 1 else (methods.pop() if methods else "native"),
        (1 if texts else 0) + sum(r.pages for r in results),
        mean_confidence(confidences),
        error="; ".join(errors) or (None if text.strip() else "no text in any part"),
    )
