"""Scans as office scanners and fax servers write them: every PDF image encoding read, a failure named, faxes."""

from __future__ import annotations

import io
import shutil

import pypdf
import pytest

from clinicflow.ingest.text import pdf_text
from clinicflow_dev.ingest_demo import pdf_with_text, render_page
from tests.support.pdf_images import pdf_of_image, pdf_without_unicode_map

PAGE = "REFERRAL\nPatient: Ana Gomez\nMRN: 4471902\nDOB: 1961-04-23\n"


@pytest.mark.parametrize("encoding", ["jbig2", "g4", "jpx"])
def test_a_scanned_page_is_read_whatever_its_image_encoding(encoding: str) -> None:
    if encoding == "jbig2" and shutil.which("jbig2dec") is None:
        pytest.fail("jbig2dec is not installed: scripts/bootstrap.sh installs it")
    result = pdf_text(pdf_of_image(render_page(PAGE), encoding))
    assert result.error is None
    assert result.method == "ocr"
    assert "MRN: 4471902" in (result.text or "")


def test_an_image_pypdf_cannot_decode_is_read_from_the_rendered_page_and_other_pages_too() -> None:
    writer = pypdf.PdfWriter()
    for document in (pdf_of_image(render_page(PAGE), "jbig2"), pdf_with_text("Page two\n" + "Plan: recall. " * 20)):
        writer.append(pypdf.PdfReader(io.BytesIO(document)))
    out = io.BytesIO()
    writer.write(out)
    with pypdf.apply_configuration(jbig2dec_binary=None):  # a machine without Debian's jbig2dec
        result = pdf_text(out.getvalue())
    assert result.error is None
    assert (result.method, result.pages) == ("mixed", 2)
    assert "MRN: 4471902" in (result.text or "")
    assert "Plan: recall." in (result.text or "")


def test_an_image_nothing_can_decode_is_named_and_the_document_has_no_text() -> None:
    broken = pdf_of_image(render_page(PAGE), "jpx").replace(b"jP  ", b"xx  ", 1)  # the JPEG 2000 signature box
    result = pdf_text(broken)
    assert result.text is None  # a no-text dead letter naming the image, never an empty document
    assert result.error is not None
    assert result.error.startswith("page 1: image Im0 not decoded (")


def test_a_text_layer_of_glyph_codes_is_not_read_as_text_but_the_rendered_page_is() -> None:
    text = "CONSULTATION NOTE\nPatient: Ana Gomez\nMRN: 4471902\nDOB: 1961-04-23\n" + "Plan: recall in 3 months.\n" * 6
    with_logo = pdf_text(pdf_without_unicode_map(text, logo=True))  # the logo's empty OCR is not the page
    assert "MRN: 4471902" in (with_logo.text or "")
    data = pdf_without_unicode_map(text)
    layer = pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert "Ana Gomez" not in layer  # what a reader of the text layer alone would store
    result = pdf_text(data)
    assert result.error is None
    assert result.method == "ocr"
    assert "MRN: 4471902" in (result.text or "")
    assert "Ana Gomez" in (result.text or "")


def test_an_encrypted_pdf_is_read_when_it_opens_without_a_password_and_named_when_it_does_not() -> None:
    def encrypted(user_password: str) -> bytes:
        writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf_with_text(PAGE + "Plan: recall. " * 20))))
        writer.encrypt(
            user_password=user_password, owner_password="fake-sentinel-not-a-credential-8", algorithm="AES-256"
        )
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    assert "MRN: 4471902" in (pdf_text(encrypted("")).text or "")  # a portal's "no printing" permissions only
    locked = pdf_text(encrypted("fake-sentinel-not-a-credential-9"))
    assert locked.text is None
    assert locked.error == "password-protected PDF: it opens only with its password"


def test_a_standard_mode_fax_with_half_height_pixels_is_read_as_square_pixels() -> None:
    from PIL import Image

    from clinicflow.ingest.text import document_text

    page = render_page(PAGE + "Diagnosis: chronic periodontitis\n")  # about 150 dpi
    width, height = page.size
    fax = page.resize((width * 204 // 150, height * 98 // 150)).convert("1")  # 204 x 98 dpi, as fax servers store
    out = io.BytesIO()
    fax.save(out, "TIFF", compression="group3", dpi=(204, 98))
    with Image.open(io.BytesIO(out.getvalue())) as stored:
        assert stored.info["dpi"] == (204.0, 98.0)
    result = document_text(out.getvalue(), "image/tiff")
    assert "MRN: 4471902" in (result.text or "")
