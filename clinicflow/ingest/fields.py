"""Candidate field values with their provenance, and the rules that turn them into one Medical-shaped dict.

Every reader (free text, HL7 v2, FHIR, C-CDA, CSV) adds :class:`Candidate`
values to a :class:`Candidates` collection: the value, where it was found
(``"text:chars 120-128"``, ``"hl7:PID-3[1]"``, ``"fhir:Patient/p1.identifier[0]"``)
and, for identifiers, a rank (a primary label such as ``MRN:`` beats an
account number). :meth:`Candidates.resolve` keeps one value per field:

- ``patient_id``, ``patient_name``, ``date_of_birth`` (the identity fields):
  the best-ranked candidates must agree once normalised, else the document is
  ambiguous (:class:`Ambiguous` names the field and the number of distinct
  values, never the values);
- other scalar fields: the first candidate of the best rank;
- list fields: every distinct value, in document order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from clinicflow.core.errors import ClinicflowError

IDENTITY_FIELDS = ("patient_id", "patient_name", "date_of_birth")
LIST_FIELDS = ("diagnosis_codes", "procedure_codes", "medications")
SSN = re.compile(r"^\d{3}-?\d{2}-?\d{4}$")
_HONORIFICS = re.compile(r"^(?:mr|mrs|ms|miss|mx|dr|prof)\.?\s+", re.I)
# A generational suffix: written after the given names in "O'Sullivan, Brendan Jr.", it ends the name.
_SUFFIX = re.compile(r"(?i)^(?:jr|sr|ii|iii|iv)\.?$")


@dataclass(frozen=True)
class Candidate:
    value: Any
    provenance: str
    rank: int = 0  # lower is better


class Ambiguous(ClinicflowError, ValueError):
    """Conflicting candidates for an identity field (message: field, count and where: never the values)."""

    def __init__(self, field_name: str, count: int, places: tuple[str, ...] = ()) -> None:
        where = f" (at {', '.join(places)})" if places else ""
        super().__init__(f"{field_name}: {count} conflicting candidates{where}")
        self.field_name = field_name
        self.count = count


def normalise_name(name: str) -> str:
    """``"SMITH, John A."`` / ``"Mr. John A Smith"`` → ``"John A Smith"`` (case kept except all-caps)."""
    text = re.sub(r"\s+", " ", name).strip(" ,;")
    text = _HONORIFICS.sub("", text)
    if "," in text:
        family, _, given = text.partition(",")
        given_words = given.split()
        suffix = [given_words.pop()] if len(given_words) > 1 and _SUFFIX.match(given_words[-1]) else []
        text = " ".join([*given_words, family.strip(), *suffix])
    words = [w.strip(".") if len(w.strip(".")) > 1 else w for w in text.split()]
    return " ".join(w.title() if w.isupper() and len(w) > 2 else w for w in words)


_CREDENTIAL = re.compile(r"(?:MD|DO|DDS|DMD|NP|PA-C|PA|PT|RN|FACC|FACS|MBBS|FRCP|PhD|PharmD|MPH|DNP)\.?,?", re.I)


def normalise_provider(name: str) -> str:
    """``DR. ALAN SMITH, MD`` → ``Dr. Alan Smith, MD``: an all-capitals name in title case, credentials as they
    are written; any other name as written (order and punctuation kept: a provider is never reordered)."""
    text = re.sub(r"\s+", " ", name).strip(" ,;")
    letters = [c for c in text if c.isalpha()]
    if not letters or not all(c.isupper() for c in letters):
        return text
    words = []
    for word in text.split(" "):
        if _CREDENTIAL.fullmatch(word):
            words.append(word.upper().replace("PHD", "PhD").replace("PHARMD", "PharmD"))
        else:
            words.append("-".join("'".join(p.capitalize() for p in part.split("'")) for part in word.split("-")))
    return " ".join(words)


def name_key(name: str) -> str:
    """Names compared by first and last word, case and initials aside."""
    words = [
        w.lower().strip(".") for w in normalise_name(name).split() if len(w.strip(".")) > 1 and not _SUFFIX.match(w)
    ]
    return f"{words[0]} {words[-1]}" if words else ""


def normalise_id(value: str) -> str:
    return value.strip().strip(".,;:#()[]").upper()


def normalise_icd10(code: str) -> str:
    code = code.strip().upper()
    return code if "." in code or len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def _place_order(provenance: str) -> tuple[int, str]:
    """Provenances in document order: ``text:chars 45-53`` by its offset, any other by its text."""
    offset = re.search(r"chars (\d+)", provenance)
    return (int(offset.group(1)) if offset else 0, provenance)


def _key(field_name: str, value: Any) -> Any:
    if field_name == "patient_name":
        return name_key(str(value))
    if field_name == "patient_id":
        return normalise_id(str(value))
    return value


@dataclass
class Candidates:
    found: dict[str, list[Candidate]] = field(default_factory=dict)

    def add(self, field_name: str, value: Any, provenance: str, rank: int = 0) -> None:
        if value is None or value == "" or value == []:
            return
        if field_name == "patient_id":
            value = normalise_id(str(value))
            if SSN.match(value) or not value:
                return  # an SSN is never a patient identifier
        if field_name == "patient_name":
            value = normalise_name(str(value))
        if field_name == "provider":
            value = normalise_provider(str(value))
        self.found.setdefault(field_name, []).append(Candidate(value, provenance, rank))

    def has(self, field_name: str) -> bool:
        return bool(self.found.get(field_name))

    def resolve(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(fields, provenance); raises :class:`Ambiguous` on conflicting identity candidates."""
        fields: dict[str, Any] = {}
        provenance: dict[str, str] = {}
        for name, candidates in self.found.items():
            if name in LIST_FIELDS:
                values: list[Any] = []
                where: list[str] = []
                for c in candidates:
                    if c.value not in values:
                        values.append(c.value)
                        where.append(c.provenance)
                fields[name] = values
                provenance[name] = "; ".join(where[:20])
                continue
            best = min(c.rank for c in candidates)
            top = [c for c in candidates if c.rank == best]
            if name in IDENTITY_FIELDS:
                first_of_each = {_key(name, c.value): c.provenance for c in reversed(top)}
                if len(first_of_each) > 1:
                    raise Ambiguous(name, len(first_of_each), tuple(sorted(first_of_each.values(), key=_place_order)))
            fields[name] = top[0].value
            provenance[name] = top[0].provenance
        return fields, provenance


# --------------------------------------------------------------------------- dates

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
DATE_PATTERN = re.compile(
    rf"\b(\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}\.\d{{1,2}}\.\d{{4}}|\d{{1,2}}/\d{{1,2}}/\d{{4}}|\d{{1,2}}/\d{{1,2}}/\d{{2}}|\d{{1,2}}-\d{{1,2}}-\d{{4}}"
    rf"|\d{{1,2}}\s+{_MONTH}\s+\d{{4}}|{_MONTH}\s+\d{{1,2}},?\s+\d{{4}}|\d{{1,2}}-{_MONTH}-\d{{4}})(?![\d/])",
    re.I,
)

_FORMATS = (
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%m/%d/%y",
    "%m-%d-%Y",
    "%d %B %Y",
    "%d %b %Y",
    "%B %d %Y",
    "%b %d %Y",
    "%d-%b-%Y",
    "%d-%B-%Y",
    "%Y%m%d",
)


DateOrder = Literal["mdy", "dmy"] | None
_NUMERIC_DATE = re.compile(r"(?<![\d/.\-])(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?![\d/])")


def numeric_date_order(text: str) -> DateOrder:
    """How a document writes its numeric dates: ``"dmy"`` when one of them has a day over 12 first
    (``14/03/1972``) and none has one second, ``"mdy"`` otherwise (the US default), None when both occur (a
    document of two conventions: a date both ways readable, ``02/10/2024``, is then not read at all). Dates in
    words say nothing: US labs write ``4 March 1975`` beside ``03/02/2024`` (2 March)."""
    day_first = month_first = False
    for match in _NUMERIC_DATE.finditer(text):
        first, second = int(match.group(1)), int(match.group(3))
        day_first |= 12 < first <= 31 and second <= 12
        month_first |= 12 < second <= 31 and first <= 12
    if day_first and month_first:
        return None
    return "dmy" if day_first else "mdy"


def parse_any_date(text: str, order: DateOrder = "mdy") -> date | None:
    """Slashes and dashes in ``order`` (US month-first by default; :func:`numeric_date_order` reads a document's),
    ISO, ``4 March 2024``, ``March 4, 2024``, ``04-Mar-2024``, ``20240304``.

    Dots are the European day-first style, read only when unambiguous (``23.04.1961``) or when the document
    writes its dates day first: ``09.02.1971`` is 9 February in a UK letter and 2 September in some US exports,
    so alone it gives None, never a guess. With ``order`` None, a numeric date is read only when one way fits.
    """
    numeric = re.fullmatch(r"\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})\s*", text)
    if numeric and (numeric.group(2) == "." or order != "mdy"):
        first, second, year = int(numeric.group(1)), int(numeric.group(3)), int(numeric.group(4))
        if year < 100:
            year += 1900 if 2000 + year > date.today().year else 2000  # a two-digit birth year is in the past
        if first > 12 or first == second:
            day_first = True
        elif second > 12:
            day_first = False
        elif order == "dmy":
            day_first = True
        else:
            return None  # readable both ways, and the document does not say which
        if numeric.group(2) == "." and not day_first:
            return None  # dots are day first
        try:
            return date(year, second, first) if day_first else date(year, first, second)
        except ValueError:
            return None
    cleaned = re.sub(r"\s+", " ", text.replace(",", " ").replace(".", " ")).strip()
    cleaned = re.sub(r"\bSept\b", "Sep", cleaned, flags=re.I)
    for fmt in _FORMATS:
        try:
            parsed = datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
        if fmt == "%m/%d/%y" and parsed.year > date.today().year:
            parsed = parsed.replace(year=parsed.year - 100)  # a two-digit birth year is in the past
        return parsed
    return None


def first_date(text: str) -> tuple[date, int, int] | None:
    """The first date in ``text`` with its span."""
    for match in DATE_PATTERN.finditer(text):
        parsed = parse_any_date(match.group(1))
        if parsed is not None:
            return parsed, match.start(1), match.end(1)
    return None


def compact_date(value: str) -> date | None:
    """HL7 / C-CDA ``YYYYMMDD[HHMM…]``."""
    digits = re.match(r"\d{8}", value or "")
    if not digits:
        return None
    try:
        return datetime.strptime(digits.group(0), "%Y%m%d").date()
    except ValueError:
        return None
