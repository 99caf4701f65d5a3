"""The clinical inbox corpus (tests/corpus/ingest): documents, their truth files, and a scorer.

``docs/`` holds the documents committed as they arrive (text in several encodings, RTF, HTML, HL7, FHIR,
C-CDA, CSV, e-mail, decoys); ``render/<name>.<ext>.txt`` holds the text of the documents built at test time:
PDFs with a text layer (fpdf2), scans as PNG / multi-page TIFF (pages split by form feeds) / JPEG / HEIC /
image-only PDF (Pillow, pillow-heif; a name with ``-sideways`` is turned a quarter, as a fax fed wrongly; a
``-stamped`` PDF is a scan under a fax server's one-line text layer; a ``-jbig2`` PDF an office scanner's
bitonal JBIG2 page, :mod:`tests.support.pdf_images`; a ``-glyph-codes`` PDF a text layer whose font lost its
Unicode map), and a DOCX (python-docx).
``truth/<name>.json`` says what a reader should get from each:
``expect`` (``medical``, ``not-clinical``, ``missing-field``, ``ambiguous-field``), ``kind`` (``text``,
``structured``, ``ocr``, ``decoy``) and the Medical fields.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clinicflow_dev.ingest_demo import pdf_with_text, render_page
from tests.support.pdf_images import pdf_of_image, pdf_without_unicode_map

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "ingest"
SCALARS = ("patient_id", "patient_name", "date_of_birth", "encounter_date", "provider")
LISTS = ("diagnosis_codes", "procedure_codes", "medications")
IDENTITY = ("patient_id", "patient_name", "date_of_birth")


def _pdf_with_text(text: str) -> bytes:
    return pdf_with_text(text)


def _stamped_scan(text: str) -> bytes:
    """A fax server's PDF: its first line as a text layer (the stamp), the rest a scanned page image below it."""
    from fpdf import FPDF

    stamp, _, body = text.partition("\n")
    pdf = FPDF(format="letter")
    pdf.set_creation_date(datetime(2024, 1, 1, tzinfo=UTC))
    pdf.add_page()
    pdf.set_font("Helvetica", size=8)
    pdf.cell(0, 5, stamp, new_x="LMARGIN", new_y="NEXT")
    image = io.BytesIO()
    render_page(body).save(image, "PNG")
    pdf.image(image, x=10, y=15, w=195)
    return bytes(pdf.output())


def _docx(text: str) -> bytes:
    import docx

    document = docx.Document()
    for line in text.split("\n"):
        document.add_paragraph(line)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def render(name: str, text: str) -> bytes:
    """The bytes of a rendered document by its extension (see the module docstring)."""
    out = io.BytesIO()
    pages = [render_page(page) for page in text.split("\f")]
    if "-sideways" in name:  # fed into the fax a quarter turn off: OCR must turn it upright
        pages = [page.rotate(90, expand=True) for page in pages]
    if name.endswith(".docx"):
        return _docx(text)
    if name.endswith(".pdf") and "-stamped" in name:
        return _stamped_scan(text)
    if name.endswith(".pdf") and "-jbig2" in name:  # an office scanner's bitonal PDF
        return pdf_of_image(pages[0], "jbig2")
    if name.endswith(".pdf") and "-glyph-codes" in name:  # a text layer without a Unicode map
        return pdf_without_unicode_map(text)
    if name.endswith(".pdf") and name.startswith("scanned"):
        pages[0].save(out, "PDF", resolution=150, save_all=True, append_images=pages[1:])
    elif name.endswith(".pdf"):
        return _pdf_with_text(text)
    elif name.endswith(".png"):
        pages[0].save(out, "PNG")
    elif name.endswith((".tif", ".tiff")):
        pages[0].save(out, "TIFF", compression="tiff_lzw", save_all=True, append_images=pages[1:], dpi=(150, 150))
    elif name.endswith((".jpg", ".jpeg")):
        pages[0].convert("RGB").save(out, "JPEG", quality=85)
    elif name.endswith(".heic"):  # a phone's photo (iPhones save HEIC)
        import pillow_heif

        pillow_heif.register_heif_opener()
        pages[0].convert("RGB").save(out, "HEIF", quality=80)
    else:
        raise ValueError(f"no renderer for {name}")
    return out.getvalue()


def build_corpus(folder: Path) -> dict[str, dict[str, Any]]:
    """Write every corpus document into ``folder``; returns name -> truth."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((CORPUS / "docs").iterdir()):
        shutil.copyfile(path, folder / path.name)
    for path in sorted((CORPUS / "render").glob("*.txt")):
        name = path.name[: -len(".txt")]
        (folder / name).write_bytes(render(name, path.read_text(encoding="utf-8")))
    return truths()


def truths() -> dict[str, dict[str, Any]]:
    return {
        p.name[: -len(".json")]: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((CORPUS / "truth").glob("*.json"))
    }


# --------------------------------------------------------------------------- scoring


def _norm(field_name: str, value: Any) -> Any:
    from clinicflow.ingest.fields import name_key, normalise_id

    if value is None:
        return None
    if field_name == "patient_name":
        return name_key(str(value))
    if field_name == "patient_id":
        return normalise_id(str(value))
    if field_name == "provider":
        return str(value)
    return str(value)


def _matches(field_name: str, predicted: Any, truth: Any) -> bool:
    if field_name == "provider":  # the clinician's family name, whatever the title and credentials
        return bool(re.search(rf"(?i)\b{re.escape(str(truth))}\b", str(predicted)))
    return _norm(field_name, predicted) == _norm(field_name, truth)


def _med_key(value: str) -> str:
    return re.split(r"[\s,]+", value.strip().lower())[0]


@dataclass
class Score:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)  # "doc: field" of a filled wrong identity value
    outcomes: list[str] = field(default_factory=list)  # "doc: expected X, got Y" of documents read wrongly

    def recall(self, fields: tuple[str, ...] = SCALARS + LISTS) -> float:
        tp = sum(self.tp[f] for f in fields)
        return tp / (tp + sum(self.fn[f] for f in fields)) if tp or any(self.fn[f] for f in fields) else 1.0

    def table(self) -> str:
        rows = [f"{'field':<18}{'precision':>10}{'recall':>8}{'tp':>5}{'fp':>5}{'fn':>5}"]
        for f in SCALARS + LISTS:
            tp, fp, fn = self.tp[f], self.fp[f], self.fn[f]
            precision = tp / (tp + fp) if tp + fp else 1.0
            recall = tp / (tp + fn) if tp + fn else 1.0
            rows.append(f"{f:<18}{precision:>10.3f}{recall:>8.3f}{tp:>5}{fp:>5}{fn:>5}")
        return "\n".join(rows)


def score_one(score: Score, name: str, truth: dict[str, Any], medical: Any, reason: str | None) -> None:
    """Add one document's outcome (a Medical or a dead-letter reason) to ``score``."""
    expect = truth["expect"]
    if expect != "medical":
        if medical is not None:
            score.outcomes.append(f"{name}: expected {expect}, got a Medical row")
            for f in IDENTITY:
                if getattr(medical, f) is not None:
                    score.wrong.append(f"{name}: {f}")
        elif reason != expect:
            score.outcomes.append(f"{name}: expected {expect}, got {reason}")
        return
    if medical is None:
        score.outcomes.append(f"{name}: expected a Medical row, got {reason}")
    for f in SCALARS:
        want = truth.get(f)
        got = None if medical is None else getattr(medical, f)
        got = got.isoformat() if hasattr(got, "isoformat") else got
        if want is None:
            if got is not None:
                score.fp[f] += 1
            continue
        if got is None:
            score.fn[f] += 1
        elif _matches(f, got, want):
            score.tp[f] += 1
        else:
            score.fp[f] += 1
            score.fn[f] += 1
            if f in IDENTITY:
                score.wrong.append(f"{name}: {f}")
    for f in LISTS:
        key = _med_key if f == "medications" else (lambda v: str(v).upper())
        want_set = {key(v) for v in truth.get(f) or []}
        got_set = set() if medical is None else {key(v) for v in getattr(medical, f)}
        score.tp[f] += len(want_set & got_set)
        score.fp[f] += len(got_set - want_set)
        score.fn[f] += len(want_set - got_set)
