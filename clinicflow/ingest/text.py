"""Text out of every format a clinic inbox holds: the text the extractors read, how it was got, its page count.

One entry point, :func:`document_text`, by the MIME type the bytes show
(:mod:`clinicflow.ingest.sniff`), each format through a maintained parser:

- plain text, Markdown, CSV, HL7 v2, JSON, XML: decoded (UTF-8, else the
  encoding charset-normalizer detects: cp1252, Latin-1, UTF-16 with BOM);
- HTML: selectolax (Lexbor), scripts and styles dropped, block elements as lines;
- RTF: striprtf;
- PDF: pypdf's text layer page by page; a page without one (a scan), or with only a
  fax server's stamp over a scanned page, is OCR'd from the images it carries;
- PNG, JPEG, GIF, multi-page TIFF, HEIC (pillow-heif): OCR with Tesseract (pytesseract), every frame;
- DOCX: python-docx (paragraphs and table cells);
- e-mail (``.eml``) and ZIP archives: each part by its own format (:mod:`clinicflow.ingest.containers`).

The result records ``method`` (``native`` / ``ocr`` / ``mixed``), ``pages``
and the mean OCR word confidence (0-100), stored with the document. Nothing
here raises for a bad file: an unreadable one gives :class:`TextResult` with
``text=None`` and ``error`` set.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from clinicflow.core.text_encoding import decode_bytes
from clinicflow.ingest.forms import docx_text, form_field_lines, table_lines
from clinicflow.ingest.sniff import HEIF_BRANDS

TEXT_MIMES = (
    "text/plain",
    "text/markdown",
    "text/csv",
    "x-application/hl7-v2+er7",
    "application/json",
    "application/xml",
)
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/tiff", "image/heic")
MESSAGE_MIME = "message/rfc822"
OCR_LANG = "eng"
# A PDF page with this much text is read from its text layer; one with less (a fax server's stamp over a scan)
# also has its page-sized images OCR'd, and one with under NATIVE_TEXT_CHARS every image.
SCAN_STAMP_CHARS = 200
NATIVE_TEXT_CHARS = 20
SCAN_MIN_PIXELS = 500 * 500
RENDER_DPI = 300  # a page with nothing else to read is rendered at a scan's resolution for OCR
OCR_CONFIG = "--psm 4"  # a single column of variable-size text: letters, forms and faxes
# Below this mean word confidence (or with no words), a page is checked for being sideways or upside down.
OCR_UPRIGHT_CONFIDENCE = 60.0


@dataclass(frozen=True)
class TextResult:
    text: str | None
    method: str | None = None  # native | ocr | mixed
    pages: int = 1
    ocr_confidence: float | None = None  # mean word confidence 0-100 of the OCR'd pages
    encoding: str | None = None
    error: str | None = None


def html_text(html: str) -> str:
    """Visible text of an HTML page, one line per block element."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    for node in tree.css("script, style, head"):
        node.decompose()
    body = tree.body or tree.root
    if body is None:
        return ""
    for node in body.css("br"):
        node.replace_with("\n")
    for node in body.css("p, div, li, tr, h1, h2, h3, h4, h5, h6, table, section, dt, dd"):
        node.insert_after("\n")
    for node in body.css("td, th"):
        node.insert_after("  ")
    lines = (line.strip() for line in body.text(separator="").splitlines())
    return "\n".join(line for line in lines if line)


def rtf_text(rtf: str) -> str:
    """An RTF document's text; its tables (striprtf ends each cell with ``|``, a row a line) as Word's are read:
    a form's label and value cells as ``Label: value`` (:func:`clinicflow.ingest.forms.table_lines`)."""
    from striprtf.striprtf import rtf_to_text

    text = str(rtf_to_text(rtf, errors="ignore"))  # type: ignore[no-untyped-call]
    out: list[str] = []
    rows: list[list[str]] = []
    for line in [*text.split("\n"), ""]:
        if line.rstrip().endswith("|"):
            rows.append([" ".join(cell.split()) for cell in line.rstrip().removesuffix("|").split("|")])
            continue
        if rows:
            out.extend(table_lines(rows))
            rows = []
        out.append(line)
    return "\n".join(out[:-1])


def ocr_image(image: Any) -> tuple[str, float | None]:
    """(text, mean word confidence) of one image by Tesseract; a page read poorly is turned upright first
    when Tesseract's orientation detection says it lies sideways or upside down (a fax fed the wrong way)."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode in ("1", "I;16", "I") else "RGB")
    image = _square_pixels(image)
    text, confidence = _ocr(image)
    if confidence is not None and confidence >= OCR_UPRIGHT_CONFIDENCE:
        return text, confidence
    turn = _clockwise_turn(image)
    if not turn:
        return text, confidence
    from PIL import Image

    transpose = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
    turned_text, turned_confidence = _ocr(image.transpose(transpose[turn]))
    if (turned_confidence or 0.0) > (confidence or 0.0):
        return turned_text, turned_confidence
    return text, confidence


def _square_pixels(image: Any) -> Any:
    """``image`` stretched to square pixels when its resolution differs across and down: a fax in standard
    mode is 204 x 98 dpi, its letters half as tall as wide, which Tesseract misreads ("MRN" as "MRM")."""
    dpi = image.info.get("dpi")
    try:
        across, down = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return image
    if across <= 0 or down <= 0 or abs(across - down) <= 0.1 * max(across, down):
        return image
    from PIL import Image

    width, height = image.size
    size = (width, round(height * across / down)) if across > down else (round(width * down / across), height)
    return image.resize(size, Image.Resampling.LANCZOS)


def _clockwise_turn(image: Any) -> int:
    """Degrees (0, 90, 180, 270) to turn ``image`` clockwise to read it, by Tesseract's OSD; 0 when it cannot tell."""
    import pytesseract

    try:
        found = pytesseract.image_to_osd(image, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractError:  # too few characters to tell, or no osd data installed
        return 0
    turn = int(found.get("rotate", 0)) % 360
    return turn if turn in (90, 180, 270) else 0


def _ocr(image: Any) -> tuple[str, float | None]:
    import pytesseract

    data = pytesseract.image_to_data(image, lang=OCR_LANG, config=OCR_CONFIG, output_type=pytesseract.Output.DICT)
    lines: dict[tuple[int, int, int], list[str]] = {}
    confidences: list[float] = []
    for i, word in enumerate(data["text"]):
        if not word.strip():
            continue
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        lines.setdefault(key, []).append(word)
        if float(data["conf"][i]) >= 0:
            confidences.append(float(data["conf"][i]))
    text = "\n".join(" ".join(words) for _, words in sorted(lines.items()))
    return text, (sum(confidences) / len(confidences) if confidences else None)


def image_frames(data: bytes) -> list[Any]:
    """Every frame of an image file (a multi-page TIFF has several; a phone's HEIC through pillow-heif)."""
    from PIL import Image, ImageOps, ImageSequence

    if data[4:12] in HEIF_BRANDS:
        import pillow_heif

        pillow_heif.register_heif_opener()  # idempotent: Pillow opens HEIF from here on
    with Image.open(io.BytesIO(data)) as image:
        if data[4:12] in HEIF_BRANDS:
            return [ImageOps.exif_transpose(image)]  # a phone's photo: upright as its EXIF orientation says
        return [frame.copy() for frame in ImageSequence.Iterator(image)]


def mean_confidence(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def pdf_text(data: bytes) -> TextResult:
    """The text layer of each page; a page without one, or with only a stamp over a scan, is OCR'd from its images.

    A page whose text layer is unreadable (glyph codes without a Unicode map) counts as having none; a page
    with neither a text layer nor an image OCR can read (text drawn as outlines, an undecodable image) is
    rendered by PDFium and OCR'd. What could not be read is named in ``error`` and the rest of the document read.
    """
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):  # an empty user password (permissions only) opens it
        return TextResult(None, error="password-protected PDF: it opens only with its password")
    pages: list[str] = []
    methods: set[str] = set()
    confidences: list[float] = []
    errors: list[str] = []
    rendered = _PageRenderer(data)
    try:
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").strip()
            if _unreadable(text):
                text = ""
            if len(text) >= SCAN_STAMP_CHARS:
                pages.append(text)
                methods.add("native")
                continue
            ocr_parts: list[str] = []
            page_errors: list[str] = []
            for image in _page_images(page, number, page_errors):
                with image:
                    if len(text) >= NATIVE_TEXT_CHARS and image.width * image.height < SCAN_MIN_PIXELS:
                        continue  # a logo beside the page's own text
                    part, confidence = ocr_image(image)
                ocr_parts.append(part)
                if confidence is not None:
                    confidences.append(confidence)
            if not any(part.strip() for part in ocr_parts) and len(text) < NATIVE_TEXT_CHARS:
                page_text, confidence = rendered.ocr(number, page_errors)
                if page_text:
                    ocr_parts.append(page_text)
                    page_errors.clear()  # the rendered page read what its images could not give
                    if confidence is not None:
                        confidences.append(confidence)
            errors.extend(page_errors)
            if len(text) >= NATIVE_TEXT_CHARS:
                methods.add("native")
            if ocr_parts:
                methods.add("ocr")
            # A fax server's stamp ("From: ... Page 1 of 2") is a text layer over the scanned page: keep both.
            kept = (text if len(text) >= NATIVE_TEXT_CHARS else "", *ocr_parts)
            pages.append("\n".join(p for p in kept if p) or text)
    finally:
        rendered.close()
    form = form_field_lines(reader, errors)
    if form:
        pages.append("\n".join(form))  # a fillable form's values: its own page of text after the printed ones
        methods.add("native")
    method = "mixed" if len(methods) > 1 else (methods.pop() if methods else "native")
    text = "\n\f\n".join(pages)
    error = "; ".join(errors) or None
    if error and not text.strip():
        return TextResult(None, pages=len(reader.pages), error=error)
    return TextResult(text, method, len(reader.pages), mean_confidence(confidences), error=error)


def _unreadable(text: str) -> bool:
    """A text layer of glyph codes, not characters: a font without a Unicode map gives control and private-use
    characters (a tenth of the text or more)."""
    if not text:
        return False
    odd = sum(
        1 for ch in text if (ord(ch) < 32 and ch not in "\n\t\r\f") or "\ue000" <= ch <= "\uf8ff" or ch == "\ufffd"
    )
    return odd * 10 >= len(text)


class _PageRenderer:
    """A PDF's pages rendered by PDFium (pypdfium2), opened on the first page that needs it."""

    def __init__(self, data: bytes) -> None:
        self.data: bytes = data
        self.document: Any = None

    def ocr(self, number: int, errors: list[str]) -> tuple[str | None, float | None]:
        try:
            import pypdfium2

            if self.document is None:
                self.document = pypdfium2.PdfDocument(self.data)
            page = self.document[number - 1]
            try:
                image = page.render(scale=RENDER_DPI / 72, grayscale=True).to_pil()
            finally:
                page.close()
        except Exception as exc:  # noqa: BLE001 - one page that cannot be rendered never stops the document
            errors.append(f"page {number}: not rendered ({type(exc).__name__}: {exc})"[:240])
            return None, None
        with image:
            return ocr_image(image)

    def close(self) -> None:
        if self.document is not None:
            self.document.close()


# Decoders pypdf runs as programs, and the Debian package that installs each (scripts/bootstrap.sh, Dockerfile).
_DECODER_PROGRAMS = {"jbig2dec": "jbig2dec"}


def _page_images(page: Any, number: int, errors: list[str]) -> Iterator[Any]:
    """The page's images opened by Pillow; one that cannot be decoded is named in ``errors`` and skipped."""
    from PIL import Image

    images = page.images
    for name in images.keys():  # noqa: SIM118 - iterating the list itself decodes every image, unguarded
        try:
            image = Image.open(io.BytesIO(images[name].data))
        except Exception as exc:  # noqa: BLE001 - pypdf and Pillow raise many types for one bad image
            reason = f"{type(exc).__name__}: {exc}"[:200]
            for program, package in _DECODER_PROGRAMS.items():
                if program in reason:
                    reason = f"needs the {program} program: Debian package {package}"
            errors.append(f"page {number}: image {name.lstrip('/')} not decoded ({reason})")
            continue
        yield image


def document_text(data: bytes, mime: str) -> TextResult:
    """The text of a document by its sniffed MIME type (see the module docstring)."""
    try:
        if mime == "application/pdf":
            return pdf_text(data)
        if mime in IMAGE_MIMES:
            texts, confidences = [], []
            frames = image_frames(data)
            for frame in frames:
                text, confidence = ocr_image(frame)
                texts.append(text)
                if confidence is not None:
                    confidences.append(confidence)
            return TextResult("\n\f\n".join(texts), "ocr", len(frames), mean_confidence(confidences))
        if mime == MESSAGE_MIME:
            from clinicflow.ingest.containers import message_text

            return message_text(data)
        if mime == "application/zip":
            if is_docx(data):
                return TextResult(docx_text(data), "native")
            from clinicflow.ingest.containers import archive_text

            return archive_text(data)
        decoded = decode_bytes(data)
        if decoded is None:
            return TextResult(None, error="no text layer for " + mime)
        text, encoding = decoded
        if mime == "text/html":
            return TextResult(html_text(text), "native", encoding=encoding)
        if mime == "application/rtf":
            return TextResult(rtf_text(text), "native", encoding=encoding)
        return TextResult(text, "native", encoding=encoding)
    except Exception as exc:  # noqa: BLE001 - one unreadable document never stops the batch
        return TextResult(None, error=f"{mime}: {type(exc).__name__}")


def is_docx(data: bytes) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except zipfile.BadZipFile:
        return False
