"""Sections and assertion status of free clinical text (used by :mod:`clinicflow.ingest.clinical`).

- **Sections**: heading lines (``Discharge Diagnoses:``, ``FAMILY HISTORY``)
  split the text; each section is classed by its heading (diagnosis,
  procedure, medication, family history, past history, other).
- **Assertion status** (the ConText algorithm, Chapman et al.; triggers in
  :data:`CONTEXT_TRIGGERS`): a diagnosis code whose clause carries a
  negation (``no evidence of``, ``denies``, ``ruled out``), family
  (``mother``, ``family history of``), historical (``history of``) or
  hypothetical (``rule out``, ``if``, ``risk of``) trigger before it within
  the clause, or sits in a Family History / Past History section, is not this
  patient's current diagnosis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADING = re.compile(r"(?m)^[ \t]*(?:[#*]+[ \t]*)?([A-Za-z][A-Za-z /&()'\-]{1,50}?)[ \t]*(?::|$)")

SECTION_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("family", re.compile(r"(?i)family[ \t]+(?:history|hx)|\bFHx?\b")),
    (
        "past",
        re.compile(
            r"(?i)past[ \t]+(?:medical|surgical)?[ \t]*(?:history|hx)|\bPMH\b|\bPSH\b|history of present"
            r"|\bHPI\b|social history"
        ),
    ),
    ("medication", re.compile(r"(?i)medication|\bmeds\b|prescriptions?|\brx\b|discharge[ \t]+instructions")),
    (
        "diagnosis",
        re.compile(
            r"(?i)diagnos[ie]s|\bdx\b|assessment|\bA/P\b|impression|problem|reason[ \t]+for|"
            r"indication|"
            r"icd|conclusion"
        ),
    ),
    (
        "procedure",
        re.compile(
            r"(?i)procedure|\bcpt\b|\bcdt\b|treatment[ \t]+plan|services|charges|billing|"
            r"operation|treatment[ \t]+performed|plan"
        ),
    ),
)

# ConText triggers (lower case), each scoped to the rest of its clause.
CONTEXT_TRIGGERS: dict[str, tuple[str, ...]] = {
    "negated": (
        "no evidence of",
        "no signs of",
        "no sign of",
        "negative for",
        "denies",
        "denied",
        "ruled out",
        "free of",
        "no ",
        "absence of",
        "resolved",
        "excluded",
    ),
    "family": (
        "family history",
        "mother",
        "father",
        "brother",
        "sister",
        "sibling",
        "maternal",
        "paternal",
        "grandmother",
        "grandfather",
        "aunt",
        "uncle",
        "fhx",
        "family hx",
    ),
    "historical": ("history of", "h/o", "hx of", "previous", "prior ", "remote"),
    "hypothetical": (
        "rule out",
        "r/o",
        "if ",
        "in case of",
        "risk of",
        "risk for",
        "screening for",
        "possible",
        "suspected",
        "concern for",
        "evaluate for",
        "to exclude",
        "should ",
    ),
}
CLAUSE_START_NEGATIONS = ("not", "without")
_POST_TRIGGERS = ("ruled out", "was ruled out", "excluded", "unlikely", "in the family", "resolved")
# After the finding, uncertainty (outpatient coding never codes it), ending the clause: "(I50.2) suspected",
# "(I50.2) is suspected"; "(J01.90) - suspected bacterial" is sinusitis of a suspected cause.
_POST_HYPOTHETICAL = re.compile(
    r"(?:^|\s)(?:suspected|questionable|probable|possible|cannot be excluded|not excluded)[\s.,)]*$"
)
_POST_BEFORE_COMMA = re.compile(r"\b(?:was\s+|were\s+)?(?:ruled out|excluded|resolved|unlikely)\s*,")
_CLAUSE_END = re.compile(r"(?:\.(?=\s)|;|\n|\bbut\b|\bhowever\b|\balthough\b|:)", re.I)


@dataclass(frozen=True)
class Section:
    kind: str  # diagnosis | procedure | medication | family | past | other
    heading: str
    start: int
    end: int


def _section_kind(heading: str) -> str:
    for kind, pattern in SECTION_CLASSES:
        if pattern.search(heading):
            return kind
    return "other"


def sections(text: str) -> list[Section]:
    """Heading-delimited sections; a heading is a short line start ending in ':' (or an all-caps line)."""
    marks: list[tuple[int, int, str]] = []
    for match in HEADING.finditer(text):
        heading = match.group(1).strip()
        line_end = text.find("\n", match.start())
        line = text[match.start() : line_end if line_end >= 0 else len(text)].strip()
        colon = match.group(0).rstrip().endswith(":")
        caps = heading.isupper() and len(heading) >= 4 and line == heading
        known = (
            line.lstrip("#* ").rstrip("*: ") == heading
            and len(heading.split()) <= 4
            and _section_kind(heading) != "other"
        )  # "Medications", "## Assessment"
        if (colon and len(heading.split()) <= 6) or caps or known:
            marks.append((match.start(), match.end(), heading))
    marks.extend(_soap_marks(text))
    marks.sort()
    out: list[Section] = []
    for i, (_, body, heading) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        out.append(Section(_section_kind(heading), heading, body, end))
    return out


_SOAP = re.compile(r"(?m)^[ \t]*([SOAP])[ \t]*:")
_SOAP_HEADINGS = {"S": "Subjective", "O": "Objective", "A": "Assessment", "P": "Plan"}


def _soap_marks(text: str) -> list[tuple[int, int, str]]:
    """A SOAP note's one-letter headings (``S:`` ... ``P:``), when three or more of the four start lines."""
    found = list(_SOAP.finditer(text))
    if len({m.group(1) for m in found}) < 3:
        return []  # a lone "A:" is an answer, not an assessment
    return [(m.start(), m.end(), _SOAP_HEADINGS[m.group(1)]) for m in found]


def section_at(parts: list[Section], offset: int) -> Section | None:
    found = None
    for part in parts:
        if part.start <= offset < part.end or (part.start - 1 <= offset < part.end):
            found = part
    return found


def assertion(text: str, start: int, end: int, section: Section | None) -> str:
    """``present`` or why not (``negated``, ``family``, ``historical``, ``hypothetical``) for the span."""
    if section is not None and section.kind in ("family", "past"):
        return "family" if section.kind == "family" else "historical"
    line_start = text.rfind("\n", 0, start) + 1
    before = text[line_start:start]
    cuts = [m.end() for m in _CLAUSE_END.finditer(before)]
    clause = before[cuts[-1] :] if cuts else before
    # "neuropathy ruled out, A1c above goal - E11.9": a trigger before a comma ends what came before it.
    clause = " " + _POST_BEFORE_COMMA.sub(",", clause.lower())
    words = clause.split()
    window = " " + " ".join(words[-12:]) + " "
    for status, triggers in CONTEXT_TRIGGERS.items():
        if any(f" {t}" in window or window.startswith(t) for t in triggers):
            return status
    if words and words[0] in CLAUSE_START_NEGATIONS:  # "not" / "without" inside a name: "not intractable"
        return "negated"
    after_end = _CLAUSE_END.search(text, end)
    after = text[end : after_end.start() if after_end else min(len(text), end + 80)].lower()
    if _POST_HYPOTHETICAL.search(after.strip()):
        return "hypothetical"
    if any(t in after for t in _POST_TRIGGERS):
        return "negated"
    return "present"
