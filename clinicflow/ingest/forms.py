"""Forms as practices fill them in: a Word document's text with its tables in place (a form's label and value cells
as ``Label: value``), and a fillable PDF form's typed values, which no text layer holds."""

from __future__ import annotations

import io
import re
from typing import Any


def docx_text(data: bytes) -> str:
    """A Word document's text in reading order: the header's lines, the body's paragraphs and tables as they
    come (a form's label and value cells as ``Label: value``, :func:`table_lines`), the footer's lines."""
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    lines: list[str] = []
    margins = [(s.header, s.footer) for s in document.sections if not s.header.is_linked_to_previous]
    for header, _ in margins[:1]:
        lines.extend(p.text for p in header.paragraphs if p.text.strip())
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            lines.extend(table_lines([_row_cells(row) for row in block.rows]))
        else:
            lines.append(block.text)
    for _, footer in margins[:1]:
        lines.extend(p.text for p in footer.paragraphs if p.text.strip())
    return "\n".join(lines)


def _row_cells(row: Any) -> list[str]:
    """A table row's cell texts, a cell merged across columns once (python-docx repeats it per column)."""
    cells: list[str] = []
    seen: set[int] = set()
    for cell in row.cells:
        if id(cell._tc) not in seen:
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
    return cells


_DIGIT = re.compile(r"\d")
# A form names its patient and visit: a table with none of these labels is data (a drug and its dose), not a form.
_FORM_LABEL = re.compile(
    r"(?i)patient|\bname\b|birth|\bdob\b|\bmrn\b|record|chart|\bid\b|\bdate\b|\bdos\b|provider|physician|"
    r"doctor|referr|attending|surgeon|dentist|clinician|\bsex\b|gender|diagnos|visit|service|admission"
)


def _is_label(text: str) -> bool:
    """A form's label cell: ``Patient Name``, ``Date of Birth:``, ``MRN`` (short, words, no digits)."""
    return 0 < len(text) <= 40 and text[0].isalpha() and not _DIGIT.search(text) and len(text.split()) <= 6


def _pair(label: str, value: str) -> str:
    return f"{label} {value}" if label.endswith((":", "#")) else f"{label}: {value}"


def table_lines(rows: list[list[str]]) -> list[str]:
    """A table as text lines. A form's label/value table (every row label, value[, label, value], a label naming
    the patient or the visit: ``Patient Name``, ``DOB``, ``MRN``, ``Referral Date``, ...) reads as
    ``Label: value`` pairs, a row's pairs apart by four spaces; a form of labels over one row of values
    (``Patient Name | DOB`` above ``Ann Lee | 1972-03-14``) as one pair per column; any other table as its cells
    two spaces apart, a row a line."""
    rows = [row for row in rows if any(row)]
    labels = [label for row in rows for label in row[::2]]
    form = any(_FORM_LABEL.search(label) for label in labels)
    if form and all(len(row) % 2 == 0 and all(_is_label(c) for c in row[::2]) for row in rows):
        return [
            "    ".join(_pair(label, value) for label, value in zip(row[::2], row[1::2], strict=True) if value)
            for row in rows
        ]
    if (
        len(rows) == 2
        and len(rows[0]) == len(rows[1])
        and all(_is_label(c) for c in rows[0])
        and any(_FORM_LABEL.search(c) for c in rows[0])
        and any(_DIGIT.search(c) for c in rows[1])
    ):
        return [_pair(label, value) for label, value in zip(rows[0], rows[1], strict=True) if value]
    return ["  ".join(row) for row in rows]


def _field_label(qualified_name: str) -> str:
    """``form1[0].Page1[0].PatientName[0]`` → ``Patient Name``; ``referral_date`` → ``referral date``."""
    name = re.sub(r"\[\d+\]", "", qualified_name.rsplit(".", 1)[-1])
    return " ".join(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").split())


def form_field_lines(reader: Any, errors: list[str]) -> list[str]:
    """A fillable PDF form's filled-in text and choice fields as ``Label: value`` lines (a text layer never holds
    them: they are drawn from the form's data), labelled by the field's tooltip, else its name in words."""
    try:
        fields = reader.get_fields() or {}
    except Exception as exc:  # noqa: BLE001 - pypdf raises several kinds for a damaged form; the pages still count
        errors.append(f"form fields not read: {type(exc).__name__}")
        return []
    lines: list[str] = []
    for qualified_name, field in fields.items():
        if field.get("/FT") not in ("/Tx", "/Ch"):
            continue  # buttons and signatures hold no text
        value = field.get("/V")
        text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value or "")
        text = "\n".join(" ".join(line.split()) for line in text.replace("\r", "\n").split("\n") if line.strip())
        if not text:
            continue
        label = (str(field.get("/TU") or "").strip() or _field_label(str(qualified_name))).rstrip(" :")
        lines.append(f"{label}: {text}" if "\n" not in text else f"{label}:\n{text}")
    return lines
