"""Scanned PDFs as office scanners and fax servers write them: every image encoding read, a failure named."""

from __future__ import annotations

import io
import shutil

import pypdf
import pytest

from clinicflow.ingest.text import pdf_text
from clinicflow_dev.ingest_demo import pdf_with_text, render_page
from tests.support.pdf_images import pdf_of_image

PAGE = "REFERRAL\nPatient: Ana Gomez\nMRN: 4471902\nDOB: 1961-04-23\n"


@pytest.mark.parametrize("encoding", ["jbig2", "g4", "jpx"])
def test_a_scanned_page_is_read_whatever_its_image_encoding(encoding: str) -> None:
    if encoding == "jbig2" and shutil.which("jbig2dec") is None:
        pytest.fail("jbig2dec is not installed: scripts/bootstrap.sh installs it")
    result = pdf_text(pdf_of_image(render_page(PAGE), encoding))
    assert result.error is None
    assert result.method == "ocr"
    assert "MRN: 4471902" in (result.text or "")


def test_an_image_without_its_decoder_is_named_and_the_other_pages_are_read() -> None:
    writer = pypdf.PdfWriter()
    for document in (pdf_of_image(render_page(PAGE), "jbig2"), pdf_with_text("Page two\n" + "Plan: recall. " * 20)):
        writer.append(pypdf.PdfReader(io.BytesIO(document)))
    out = io.BytesIO()
    writer.write(out)
    with pypdf.apply_configuration(jbig2dec_binary=None):  # a machine without Debian's jbig2dec
        result = pdf_text(out.getvalue())
        alone = pdf_text(pdf_of_image(render_page(PAGE), "jbig2"))
    assert result.error == "page 1: image Im0 not decoded (needs the jbig2dec program: Debian package jbig2dec)"
    assert "Plan: recall." in (result.text or "")
    assert result.pages == 2
    # Nothing read at all: no text (a no-text dead letter naming the decoder), never an empty document.
    assert alone.text is None
    assert alone.error is not None
    assert "jbig2dec" in alone.error
