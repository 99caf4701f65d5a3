"""E-mail files (``.eml``, RFC 5322 with MIME) as their parts: subject, body, attached files.

Parsed by the standard library's :mod:`email` package (``policy.default``): it
undoes quoted-printable and base64, decodes every charset and encoded-word
header, and picks the body among ``multipart/alternative`` parts, which a
hand-written reader gets wrong on real mail. :mod:`clinicflow.ingest.containers`
reads each attached file by its own format.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, MIMEPart

from clinicflow.core.text_encoding import decode_bytes

# Headers only a mail system writes: a memo that starts "From: / To: / Subject:" is not a message file.
_TRANSPORT_HEADERS = re.compile(
    rb"^(mime-version|message-id|received|return-path|dkim-signature|x-mailer|content-transfer-encoding):",
    re.IGNORECASE | re.MULTILINE,
)
_HEADER_LINE = re.compile(rb"^([!-9;-~]+:[ \t]|[ \t]+\S)")  # a field, or a folded continuation line


@dataclass
class MessageParts:
    subject: str | None = None
    body: str | None = None  # the text/plain body, else the text/html one as HTML
    body_is_html: bool = False
    attachments: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, bytes), in order


def looks_like_message(data: bytes) -> bool:
    """True when the bytes start with a mail header block that a mail system wrote."""
    head, sep, _ = data[:16384].replace(b"\r\n", b"\n").partition(b"\n\n")
    if not sep or not head:
        return False
    lines = head.split(b"\n")
    if lines[0].startswith(b"From "):  # an mbox "From sender date" line before the headers
        lines = lines[1:]
    return (
        len(lines) >= 2
        and all(_HEADER_LINE.match(line) for line in lines)
        and _TRANSPORT_HEADERS.search(b"\n".join(lines)) is not None
    )


def message_parts(data: bytes) -> MessageParts:
    """The subject, the body and the attached files (a forwarded message as its bytes) of one message."""
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage
    parts = MessageParts(subject=str(message["Subject"]) if message["Subject"] else None)
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        parts.body = _body_text(body)
        parts.body_is_html = body.get_content_type() == "text/html"
    for index, part in enumerate(_attached(message), start=1):
        name = part.get_filename() or f"part {index}"
        if part.get_content_type() == "message/rfc822":
            inner = part.get_content()
            if isinstance(inner, EmailMessage):
                parts.attachments.append((name, bytes(inner)))
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and payload:
            parts.attachments.append((name, payload))
    return parts


def _body_text(body: MIMEPart) -> str:
    """The body's text by its declared charset; a charset Python does not know (``unknown-8bit``, a typo) or
    bytes that are not in it are decoded as the file's other text is (:mod:`clinicflow.core.text_encoding`)."""
    try:
        return str(body.get_content())
    except (LookupError, UnicodeError):
        raw = body.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""
        decoded = decode_bytes(data)
        return decoded[0] if decoded is not None else data.decode("latin-1")


def _attached(message: EmailMessage) -> list[EmailMessage]:
    """Attached files, also inside nested multiparts; images the HTML body shows inline (logos) left out."""
    found: list[EmailMessage] = []
    for part in message.iter_attachments():
        if part.get_content_type() == "message/rfc822":
            found.append(part)
        elif part.is_multipart():
            found.extend(_attached(part))
        elif not (part.get_content_maintype() == "image" and part["Content-ID"] and not part.get_filename()):
            found.append(part)
    return found
