"""PDFs as office scanners and report writers make them: one image a page (JBIG2, CCITT G4, JPEG 2000), or a
text layer that is glyph codes only.

JBIG2 has no encoder on PyPI or in Debian's packages; a JBIG2 generic region may be MMR-coded, and MMR is
CCITT Group 4, which Pillow writes (through libtiff). So the stream here is three JBIG2 segments (ITU-T T.88,
embedded organisation, as PDF's JBIG2Decode takes it): page information, an immediate lossless generic
region holding the G4 bits of the page, end of page.
"""

from __future__ import annotations

import io
import struct

from PIL import Image, ImageOps

DPI = 150


def _g4_bits(bitmap: Image.Image) -> bytes:
    """The CCITT Group 4 bits of a bilevel image (one TIFF strip), 1 = black as JBIG2 wants."""
    out = io.BytesIO()
    ImageOps.invert(bitmap.convert("L")).convert("1").save(out, "TIFF", compression="group4", strip_size=1 << 30)
    with Image.open(io.BytesIO(out.getvalue())) as tiff:
        (offset,), (count,) = tiff.tag_v2[273], tiff.tag_v2[279]  # StripOffsets, StripByteCounts
    return out.getvalue()[offset : offset + count]


def _segment(number: int, kind: int, data: bytes) -> bytes:
    # number, type (page association in one byte), no referred-to segments, page 1, data length
    return struct.pack(">IBBBI", number, kind, 0, 1, len(data)) + data


def jbig2_stream(page: Image.Image) -> bytes:
    width, height = page.size
    info = struct.pack(">IIIIBH", width, height, 0, 0, 0, 0)
    region = struct.pack(">IIIIB", width, height, 0, 0, 0) + b"\x01" + _g4_bits(page)  # flags: MMR
    return _segment(0, 48, info) + _segment(1, 39, region) + _segment(2, 49, b"")


def pdf_of_image(page: Image.Image, encoding: str) -> bytes:
    """A one-page PDF that is ``page`` as one image: ``jbig2``, ``jpx`` (JPEG 2000) or ``g4`` (CCITT)."""
    width, height = page.size
    if encoding == "jbig2":
        data, params = jbig2_stream(page), "/Filter /JBIG2Decode /ColorSpace /DeviceGray /BitsPerComponent 1"
    elif encoding == "jpx":
        out = io.BytesIO()
        page.convert("L").save(out, "JPEG2000")
        data, params = out.getvalue(), "/Filter /JPXDecode /ColorSpace /DeviceGray /BitsPerComponent 8"
    elif encoding == "g4":
        data = _g4_bits(page)
        params = (
            f"/Filter /CCITTFaxDecode /DecodeParms << /K -1 /Columns {width} /Rows {height} /BlackIs1 true >> "
            "/ColorSpace /DeviceGray /BitsPerComponent 1"
        )
    else:
        raise ValueError(f"no such image encoding: {encoding}")
    points = (width * 72 // DPI, height * 72 // DPI)
    content = f"q {points[0]} 0 0 {points[1]} 0 0 cm /Im0 Do Q".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {points[0]} {points[1]}] "
        "/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>".encode(),
        f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} {params} /Length {len(data)} >>\n"
        "stream\n".encode()
        + data
        + b"\nendstream",
        f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write(b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets))
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def pdf_without_unicode_map(text: str, *, logo: bool = False) -> bytes:
    """A PDF whose text layer is glyph codes only: an embedded font with its ToUnicode map taken out, as some
    report writers and "print to PDF" drivers produce (Pillow's bundled font, so no system font is needed)."""
    import re
    import tempfile
    from pathlib import Path

    from fpdf import FPDF
    from PIL import ImageFont

    with tempfile.TemporaryDirectory() as folder:
        font = Path(folder) / "font.ttf"
        font.write_bytes(ImageFont.load_default(size=12).font_bytes)  # type: ignore[union-attr]
        pdf = FPDF(format="letter")
        pdf.add_page()
        if logo:  # a letterhead's small mark, with nothing for OCR to read
            mark = io.BytesIO()
            Image.new("L", (80, 80), 200).save(mark, "PNG")
            pdf.image(mark, x=180, y=8, w=15)
        pdf.add_font("Bundled", "", str(font))
        pdf.set_font("Bundled", size=11)
        for line in text.split("\n"):
            pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
        data = bytes(pdf.output())
    # Same length, so the cross-reference offsets stay right.
    return re.sub(rb"/ToUnicode \d+ 0 R", lambda m: b" " * len(m.group()), data)


def pdf_form(printed: str, fields: list[tuple[str, str, str | None]]) -> bytes:
    """A fillable PDF form as a practice's referral form is sent: the labels printed on the page (``printed``),
    the values only in AcroForm text fields ``(name, value, tooltip)``, never drawn into the page's text."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import (
        ArrayObject,
        BooleanObject,
        DictionaryObject,
        FloatObject,
        NameObject,
        NumberObject,
        TextStringObject,
    )

    from clinicflow_dev.ingest_demo import pdf_with_text

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_with_text(printed))))
    page = writer.pages[0]
    refs = ArrayObject()
    for index, (name, value, tooltip) in enumerate(fields):
        top = 740 - 18 * index
        widget = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Annot"),
                NameObject("/Subtype"): NameObject("/Widget"),
                NameObject("/FT"): NameObject("/Tx"),
                NameObject("/T"): TextStringObject(name),
                NameObject("/V"): TextStringObject(value),
                NameObject("/Rect"): ArrayObject([FloatObject(v) for v in (300, top, 560, top + 14)]),
                NameObject("/F"): NumberObject(4),
                NameObject("/P"): page.indirect_reference,
            }
        )
        if tooltip:
            widget[NameObject("/TU")] = TextStringObject(tooltip)
        refs.append(writer._add_object(widget))
    page[NameObject("/Annots")] = refs
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject(
        {NameObject("/Fields"): refs, NameObject("/NeedAppearances"): BooleanObject(True)}
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
