"""E-mail files (.eml): the text a clinic's mailbox export gives the extractors (pure functions, no database)."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

from clinicflow.ingest.sniff import decode_text, sniff_mime
from clinicflow.ingest.text import MESSAGE_MIME, document_text
from clinicflow_dev.ingest_demo import pdf_with_text

LETTER = "Patient: Sofia Marchetti\nDate of birth: 1988-07-02\nPatient ID: LO-551903\nDiagnosis: K01.1\n"
HL7 = "MSH|^~\\&|LAB|NORTH|||20240302||ORU^R01|1|P|2.5.1\rPID|1||L-448812^^^MRN||RAHMAN^AISHA||19750304|F\r"


def _message(subject: str = "Referral", body: str = "See attached.\n") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Front Desk <frontdesk@clinic.example>"
    message["To"] = "referrals@practice.example"
    message["Subject"] = subject
    message["Message-ID"] = "<1@clinic.example>"
    message.set_content(body)
    return message


def _text(message: EmailMessage) -> tuple[str, str | None, str | None, int]:
    data = message.as_bytes(policy=policy.SMTP)
    mime = sniff_mime(data, decode_text(data))
    assert mime == MESSAGE_MIME
    result = document_text(data, mime)
    return result.text or "", result.method, result.error, result.pages


def test_the_plain_body_is_read_not_its_html_twin_nor_the_transfer_encoding() -> None:
    message = _message(subject="Referral: Marcus Whitfield", body="Patient: Marcus Whitfield\nMRN: LO-448812 " * 8)
    message.add_alternative("<p>Patient: Marcus&nbsp;Whitfield</p>", subtype="html")
    text, method, error, pages = _text(message)
    assert text.startswith("Subject: Referral: Marcus Whitfield\n\f\nPatient: Marcus Whitfield")
    assert text.count("Marcus") == 9  # subject and plain body only
    assert "=\n" not in text
    assert "\r" not in text
    assert "<p>" not in text
    assert (method, error, pages) == ("native", None, 1)


def test_an_html_only_body_is_read_as_its_visible_text() -> None:
    message = _message()
    message.set_content("<html><body><p>Patient: Ana&nbsp;Gomez</p><script>x()</script></body></html>", subtype="html")
    text, *_ = _text(message)
    assert text.endswith("Patient: Ana\u00a0Gomez")
    assert "x()" not in text


def test_attached_files_are_read_by_their_own_format_and_an_unreadable_one_is_named() -> None:
    message = _message(body="Referral letter attached.\n")
    message.add_attachment(pdf_with_text(LETTER), maintype="application", subtype="pdf", filename="letter.pdf")
    message.add_attachment(b"\x00\x01\x02binary", maintype="application", subtype="octet-stream", filename="x.bin")
    text, _method, error, pages = _text(message)
    assert "Referral letter attached." in text
    assert "Patient ID: LO-551903" in text
    assert pages == 2  # the subject and body, the PDF's page
    assert error == "attachment 'x.bin': no text layer for application/octet-stream"


def test_one_structured_attachment_is_the_whole_text() -> None:
    message = _message(body="A result for your patient is attached. MRN 99999999 in our system.\n")
    message.add_attachment(HL7.encode(), maintype="application", subtype="octet-stream", filename="result.hl7")
    text, *_ = _text(message)
    assert text == HL7  # the covering note's other identifier never competes with the message's


def test_a_forwarded_message_is_read_inside_and_nesting_is_bounded() -> None:
    inner = _message(subject="Original referral", body=LETTER)
    message = _message(subject="FW: referral", body="FYI, below.\n")
    message.add_attachment(inner)
    text, *_ = _text(message)
    assert "Subject: Original referral" in text
    assert "Patient ID: LO-551903" in text
    for level in range(4):
        outer = _message(subject=f"FW {level}")
        outer.add_attachment(message)
        message = outer
    text, _, error, _ = _text(message)
    assert "LO-551903" not in text
    assert error is not None
    assert "nested more than 3 deep" in error


def test_an_inline_logo_is_not_read_as_an_attachment() -> None:
    message = _message(body="Hi\n")
    message.add_alternative('<p>Hi</p><img src="cid:logo@clinic">', subtype="html")
    html = message.get_payload()[1]
    html.add_related(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image", "png", cid="<logo@clinic>")
    # Some mailers put the related part at the top level, beside the attachments.
    message.add_attachment(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, maintype="image", subtype="png", cid="<sig@clinic>")
    del message.get_payload()[-1]["Content-Disposition"]
    _, _, error, pages = _text(message)
    assert error is None
    assert pages == 1


def test_a_body_in_a_charset_python_does_not_know_is_still_read() -> None:
    data = (
        b"Message-ID: <2@clinic.example>\r\nSubject: Referral\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=unknown-8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + "Patient: José Muñoz\r\nMRN: CS-20417\r\n".encode("cp1252")
    )
    result = document_text(data, sniff_mime(data, decode_text(data)))
    assert result.error is None
    assert "Patient: José Muñoz" in (result.text or "")
