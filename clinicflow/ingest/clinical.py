"""Free clinical text → field candidates: labelled identifiers, dates, sections, assertion status, codes, medications.

- **Identifiers** only from a label in a common style (``MRN:``, ``MRN #``,
  ``Medical Record #:``, ``Med Rec No.``, ``Patient ID``, ``Chart No.``,
  ``Acct#`` as a lower-ranked fallback) followed by an id-shaped token
  holding a digit; anything labelled SSN / Social Security, or shaped like
  one, is never a patient id. Names from ``Patient:`` / ``Patient Name:`` /
  ``Name:`` / ``RE:`` with a name-shaped value; birth dates from ``DOB`` /
  ``Date of Birth`` / ``Born``.
- **Sections** (:mod:`clinicflow.ingest.context`): heading lines (``Discharge Diagnoses:``, ``FAMILY HISTORY``)
  split the text; each section is classed by its heading (diagnosis,
  procedure, medication, family history, past history, other).
- **Assertion status** (the ConText algorithm, Chapman et al.; triggers in
  :data:`~clinicflow.ingest.context.CONTEXT_TRIGGERS`): a diagnosis code whose clause carries a
  negation (``no evidence of``, ``denies``, ``ruled out``), family
  (``mother``, ``family history of``), historical (``history of``) or
  hypothetical (``rule out``, ``if``, ``risk of``) trigger before it within
  the clause, or sits in a Family History / Past History section, is not this
  patient's current diagnosis.
- **ICD-10-CM** codes anywhere (with a dot; a 3-character code only in a
  diagnosis context: a diagnosis section, after ``DX``/``ICD-10``, in
  parentheses) validated against the code set simple-icd-10-cm ships.
- **CPT / HCPCS / CDT**: ``D0120``-shaped CDT codes anywhere outside a
  diagnosis context; 5-digit CPT, ``nnnnF`` and HCPCS letter codes in a
  procedure context (a procedure section, after ``CPT``/``HCPCS``/``CDT``).
- **Medications** with their dose: :mod:`clinicflow.ingest.medications`.
"""

from __future__ import annotations

import re
from itertools import islice

from clinicflow.ingest.coding import PX_LABEL, billable_icd10, valid_icd10
from clinicflow.ingest.context import Section, assertion, section_at, sections
from clinicflow.ingest.fields import (
    DATE_PATTERN,
    SSN,
    Candidates,
    DateOrder,
    first_date,
    normalise_icd10,
    numeric_date_order,
    parse_any_date,
)
from clinicflow.ingest.medications import read_medications

_LEADER = r"(?:[ \t]*\.{2,})?"  # "MRN ..........: 0034410"
_SEP = rf"(?![A-Za-z]){_LEADER}\**[ \t]*(?:[:;#=]|No\.?|Number)?[ \t]*[:#]?\**[ \t]*"  # ";": OCR's ":"
ID_LABELS_PRIMARY = (
    r"MRN|M\.R\.N\.?|MR[ \t]*(?=#)|Medical[ \t]+Record(?:[ \t]+(?:Number|No\.?|#))?|Med\.?[ \t]*Rec\.?"
    r"(?:[ \t]+(?:No\.?|#))?|Patient[ \t]+(?:ID|Identifier|No\.?|Number|#)|Pt\.?[ \t]+ID|"
    r"Chart(?:[ \t]+(?:No\.?|Number|#|ID))?|Unit[ \t]+(?:No\.?|Number)|Hospital[ \t]+(?:No\.?|Number)|"
    r"E[HM]R(?:[ \t]+(?:No\.?|Number|#|ID))?"
)
ID_LABELS_ACCOUNT = r"Acct\.?|Account(?:[ \t]+(?:No\.?|Number|#))?"
# A national patient number (England and Wales' NHS number, Scotland's CHI number), ranked below a local record
# number: ten digits, written 3-3-4, stored without spaces and only when its modulus-11 check digit holds.
NATIONAL_ID = re.compile(
    rf"(?<![A-Za-z])(?:NHS|CHI)(?:[ \t]+(?:No\.?|Number|#))?{_LEADER}\**[ \t]*[:;#]?\**[ \t]*"
    r"(\d{3}[ \t\-]?\d{3}[ \t\-]?\d{4})(?![\dA-Za-z])",
    re.I,
)
_ID_VALUE = r"([A-Z0-9][A-Z0-9\-]*)"
ID_PRIMARY = re.compile(rf"(?<![A-Za-z])(?:{ID_LABELS_PRIMARY}){_SEP}{_ID_VALUE}(?![A-Za-z0-9])", re.I)
ID_ACCOUNT = re.compile(rf"(?<![A-Za-z])(?:{ID_LABELS_ACCOUNT}){_SEP}{_ID_VALUE}(?![A-Za-z0-9])", re.I)
SSN_LABEL = re.compile(r"\b(?:SSN|SS#|Social[ \t]+Security)", re.I)

_UPPER = "A-ZÀ-ÖØ-Þ"
_NAME_WORD = rf"[{_UPPER}][^\W\d_]*(?:['’\-][^\W\d_]+)*\.?"
_NAME_VALUE = (
    rf"((?:(?:Mr|Mrs|Ms|Miss|Dr)\.?[ \t]+)?(?:{_NAME_WORD},?[ \t]+)(?:[{_UPPER}]\.?[ \t]+)?{_NAME_WORD}"
    rf"(?:[ \t]+[{_UPPER}]\.?)?(?:[ \t]+{_NAME_WORD})?)"
)
NAME = re.compile(
    rf"(?im)(?:^|[ \t]{{2,}}|\|[ \t]*)\**(?:Patient[ \t]+Name|Patient|Pt\.?[ \t]+Name|Pt|Name|RE|Re)"
    rf"(?:[ \t]*\((?:Last|Surname|Family|First|Given)\b[^)\n]{{0,30}}\))?"  # "Patient Name (Last, First):"
    rf"{_LEADER}[ \t]*:\**[ \t]*{_NAME_VALUE}"
    rf"(?=[ \t]*(?:$|[ \t]{{2,}}|\||,[ \t]*(?:DOB|MRN|Age)|\(|[ \t]+(?:DOB|MRN|Age|Sex|Date)\b))"
)
_NOT_NAMES = {"male", "female", "unknown", "none", "n/a", "self", "same"}
# A letter's patient in its first sentence: "Thank you for referring Ms. Hannah Blake (MRN ...)", "I saw Mr Alan
# Cortez in clinic": the honorific is required (a doctor's name follows "Dr", never these).
LETTER_NAME = re.compile(
    r"(?i:thank[ \t]+you[ \t]+for[ \t]+(?:referring|your[ \t]+referral[ \t]+of|asking[ \t]+me[ \t]+to[ \t]+see)"
    r"|I[ \t]+(?:saw|reviewed|met|assessed))[ \t]+(?:your[ \t]+patient[ \t]+)?"
    rf"((?:Mr|Mrs|Ms|Miss|Mx)\.?[ \t]+{_NAME_WORD}(?:[ \t]+[{_UPPER}]\.?)?(?:[ \t]+{_NAME_WORD}){{1,2}})"
    r"(?=[ \t]*(?:[,.(;]|$|[ \t](?:in|on|at|for|today|who|with|DOB|MRN)\b))"
)
DOB = re.compile(
    r"(?i)\b(?:DOB|D\.O\.B\.?|Date[ \t]+of[ \t]+Birth|Birth[ \t]*Date|Born)(?:[ \t]*/[ \t]*(?:Age|Sex|Gender))?"
    r"(?:[ \t]*\.{2,})?\**[ \t]*[:;#]?"  # ";": OCR's reading of ":"
    r"\**[ \t]*"
)
ENCOUNTER_LABELS = (
    "Date/Time of Service",
    "Date of Service",
    "DOS",
    "Visit Date/Time",
    "Visit Date",
    "Date of Visit",
    "Encounter Date/Time",
    "Encounter Date",
    "Service Date/Time",
    "Service Date",
    "Exam Date",
    "Date of Exam",
    "Procedure Date",
    "Date of Procedure",
    "Date of Surgery",
    "Surgery Date",
    "Date of Operation",
    "Operation Date",
    "Study Date",
    "Date of Study",
    "Admission Date/Time",
    "Admission Date",
    "Admit Date/Time",
    "Admit Date",
    "Date of Admission",
    "Admitted on",
    "Admitted",
    "Collected",
    "Collection Date",
    "Specimen Collected",
    "Report Date",
    "Date of Report",
    "Referral Date",
    "Note Date",
    "Seen on",
    "Seen",
    "in clinic on",  # a letter's "I reviewed Mr Cortez in clinic on 14 May 2024"
    "Date",  # last: a letter's bare "Date:" is when it was written, after the visit it reports
)
_SPACES = r"[ \t]+"
ENCOUNTER = [
    re.compile(r"(?i)(?<![A-Za-z])" + re.escape(label).replace(r"\ ", _SPACES) + _LEADER + r"\**[ \t]*[:#]?\**[ \t]*")
    for label in ENCOUNTER_LABELS
]
TITLE_LINE = re.compile(
    r"(?i)\b(?:note|report|summary|letter|consult(?:ation)?|visit|exam(?:ination)?|encounter|referral|assessment)\b"
)
# A title line's date that is when the paper was made, not when the patient was seen.
NOT_VISIT_DATE = re.compile(r"(?i)\b(?:printed|generated|created|faxed|sent|run|exported|page)\b")
PROVIDER = re.compile(
    r"(?im)(?:^|[ \t]{2,}|\|[ \t]*)\**(?:Attending(?:[ \t]+Physician)?|Provider|Physician|Rendering[ \t]+"
    r"Provider|Treating[ \t]+(?:Physician|Dentist)|Surgeon|Dentist|Clinician|Ordering[ \t]+"
    r"(?:Physician|Provider)|Referring[ \t]+(?:Physician|Provider|Dentist)|Radiologist|"
    r"Consultant|Pathologist|Therapist|Nurse|Pharmacist|Seen[ \t]+by|Ordered[ \t]+by|Prescriber|"
    r"Prescribing[ \t]+(?:Physician|Provider|Doctor)|(?:Reading|Interpreting)[ \t]+(?:Physician|Radiologist)|"
    r"Referring|Performed[ \t]+by|Dictated[ \t]+by|Reported[ \t]+by|"
    r"Signed(?:[ \t]+by)?|Electronically[ \t]+signed[ \t]+by|Author)" + _LEADER + r"\**[ \t]*:\**[ \t]*"
    # Name words one space apart: two spaces or a tab is the next column (`Dr. Helen Park     NPI: 16290…`), and
    # a word followed by ':' or '#' is the next label.
    r"((?:Dr\.?[ \t]+)?[A-ZÀ-Þ][^\W\d_.'’\-]*\.?(?:['’\-][^\W\d_]+)*(?: (?![^\W\d_]+\.?[ \t]*[:#])"
    r"[A-ZÀ-Þ][^\W\d_]*\.?(?:['’\-][^\W\d_]+)*){0,3}"
    r"(?:,[ \t]*(?:MD|DO|DDS|DMD|NP|PA-C|PA|PT|RN|FACC|MBBS|PhD|PharmD)\b\.?)*)"
)

# A letter's closing, then its signer on the next line: a doctor ("Dr", or a credential after a comma).
SIGNATURE = re.compile(
    r"(?im)^[ \t]*(?:Yours[ \t]+sincerely|Sincerely(?:[ \t]+yours)?|Yours[ \t]+faithfully|Yours[ \t]+truly|"
    r"(?:Kind|Best|Warm|With[ \t]+kind)[ \t]+regards|Regards|Respectfully(?:[ \t]+yours)?|Best[ \t]+wishes|"
    r"(?:Many[ \t]+)?[Tt]hanks|Thank[ \t]+you(?:[ \t]+(?:again|kindly))?|With[ \t]+thanks)[ \t]*[,!.]?[ \t]*\n"
    r"(?:[ \t]*\n)?[ \t]*"
    r"((?:Dr\.?[ \t]+[A-ZÀ-Þ][^\W\d_]+(?:['’\-][^\W\d_]+)*(?:[ \t]+[A-ZÀ-Þ][^\W\d_]*\.?(?:['’\-][^\W\d_]+)*){1,3})"
    r"|(?:[A-ZÀ-Þ][^\W\d_]+(?:[ \t]+[A-ZÀ-Þ][^\W\d_]*\.?){1,3},[ \t]*(?:MD|DO|DDS|DMD|NP|PA-C|MBBS|FRCP)\b))"
)
# An OCR'd "K01.1" often reads "KO1.1": a letter O where the code has a digit is taken as 0 (dotted codes only).
ICD10 = re.compile(r"(?<![A-Za-z0-9.\-])([A-TV-Z][0-9O][0-9ABO](?:\.[0-9A-TV-Z]{1,4})?)(?![A-Za-z0-9]|\.\d)")
# An ICD-10-CM code written without its dot, as claims carry it ("K0530"): read in a diagnosis context only.
UNDOTTED_ICD10 = re.compile(r"(?<![A-Za-z0-9.\-/$])([A-TV-Z]\d[0-9AB][0-9A-TV-Z]{1,4})(?![A-Za-z0-9]|\.\d)")
# ... and a chapter-I code's letter often reads as a one ("(148.91)" for I48.91): taken as I only for a code of
# two characters or more after the dot (not a temperature, "fever (101.2)"), alone in parentheses or right after
# a diagnosis label, and billable (no subcodes).
OCR_I_CODE = re.compile(r"(?<![A-Za-z0-9.\-$])[1l](\d{2}\.[0-9A-TV-Z]{2,4})(?![A-Za-z0-9]|\.\d)")
CDT = re.compile(r"(?<![A-Za-z0-9])(D\d{4})(?![A-Za-z0-9]|\.\d)")
CPT = re.compile(r"(?<![A-Za-z0-9.\-/$])(\d{4}[0-9F]|[A-CEGHJ-MP-V]\d{4})(?![A-Za-z0-9\-/%]|\.\d)")
DX_LABEL = re.compile(r"(?i)(?:\bDX\b|\bICD(?:-?10(?:-?CM)?)?\b|\bdiagnos(?:is|es)\b)[ \t]*(?:codes?)?[ \t]*[:#]?")


def _line_of(text: str, offset: int) -> str:
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    return text[start : end if end >= 0 else len(text)]


_SPACES_AS_SPACE = str.maketrans(dict.fromkeys("\u00a0\u2002\u2003\u2007\u2009\u202f\u205f\u3000\r", " "))


def read_text(text: str, out: Candidates) -> dict[str, int]:
    """Add every candidate found in free text to ``out``; returns counts of clinical signals (for decoys)."""
    signals = {"sections": 0, "codes": 0, "dob": 0, "ids": 0}
    # No-break and other fixed-width spaces (HTML's &nbsp;, DOCX, PDFs) read as spaces, and Windows' CRLF line
    # ends as " \n" (a lone CR as a line end): one character for one, so provenance offsets point into the stored text.
    text = re.sub(r"\r(?!\n)", "\n", text).translate(_SPACES_AS_SPACE)
    parts = sections(text)
    signals["sections"] = sum(1 for p in parts if p.kind != "other")
    _identifiers(text, out, signals)
    _dates(text, out, signals, numeric_date_order(text))
    _provider(text, out)
    _codes(text, parts, out, signals)
    read_medications(text, parts, out)
    return signals


def valid_national_id(digits: str) -> bool:
    """The NHS/CHI check: the first nine digits weighted 10..2, ``11 - sum % 11`` (11 as 0, 10 never valid)."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    return (0 if check == 11 else check) == int(digits[9])


def _identifiers(text: str, out: Candidates, signals: dict[str, int]) -> None:
    for match in NATIONAL_ID.finditer(text):
        digits = re.sub(r"\D", "", match.group(1))
        if valid_national_id(digits):
            out.add("patient_id", digits, f"text:chars {match.start(1)}-{match.end(1)}", rank=1)
            signals["ids"] += 1
    for pattern, rank in ((ID_PRIMARY, 0), (ID_ACCOUNT, 2)):
        for match in pattern.finditer(text):
            value = match.group(1)
            label_text = text[text.rfind("\n", 0, match.start()) + 1 : match.start(1)]
            if not re.search(r"\d", value) or SSN.match(value) or SSN_LABEL.search(label_text):
                continue
            out.add("patient_id", value, f"text:chars {match.start(1)}-{match.end(1)}", rank=rank)
            signals["ids"] += 1
    for match in NAME.finditer(text):
        value = match.group(1).strip()
        if value.lower() in _NOT_NAMES or any(w.lower().strip(".,") in _NOT_NAMES for w in value.split()):
            continue
        out.add("patient_name", value, f"text:chars {match.start(1)}-{match.end(1)}")
    for match in LETTER_NAME.finditer(text):
        out.add("patient_name", match.group(1).strip(), f"text:chars {match.start(1)}-{match.end(1)}", rank=1)


def _provider(text: str, out: Candidates) -> None:
    """The treating or reporting clinician: the first labelled one, else the letter's signer, else the referrer
    (the one who sent the patient: the provider of a referral, not of the consult or report that names them)."""
    labelled = list(PROVIDER.finditer(text))
    own = [m for m in labelled if not re.search(r"(?i)referr", text[m.start() : m.start(1)])]
    signed = SIGNATURE.search(text)
    for rank, match in enumerate((own[0] if own else None, signed, labelled[0] if labelled else None)):
        if match is not None:
            out.add("provider", match.group(1).strip(" ,"), f"text:chars {match.start(1)}-{match.end(1)}", rank=rank)
            return


# A line about someone else: a parent's, guardian's or contact's birth date is not the patient's.
_OTHER_PERSON_LINE = re.compile(
    r"(?i)^[ \t]*(?:accompanied[ \t]+by|mother|father|parent|guardian|caregiver|carer|spouse|partner|husband|wife|"
    r"next[ \t]+of[ \t]+kin|emergency[ \t]+contact|contact|informant|guarantor|subscriber|policy[ \t]+holder|"
    r"insured|responsible[ \t]+party)\b[^:\n]{0,30}:"
)


def _dates(text: str, out: Candidates, signals: dict[str, int], order: DateOrder) -> None:
    for match in DOB.finditer(text):
        if _OTHER_PERSON_LINE.match(_line_of(text, match.start())):
            continue
        found = DATE_PATTERN.match(text, match.end())
        if found:
            parsed = parse_any_date(found.group(1), order)
            if parsed:
                out.add("date_of_birth", parsed, f"text:chars {found.start(1)}-{found.end(1)}")
                signals["dob"] += 1
    for rank, pattern in enumerate(ENCOUNTER):
        for match in pattern.finditer(text):
            head = text[max(0, match.start() - 12) : match.start()].lower()
            if "birth" in head or "of " in head[-3:]:
                continue
            found = DATE_PATTERN.match(text, match.end())
            parsed = parse_any_date(found.group(1), order) if found else None
            if found and parsed:
                out.add("encounter_date", parsed, f"text:chars {found.start(1)}-{found.end(1)}", rank=rank)
                return
    # No labelled date: the date in the note's title line ("PROGRESS NOTE  2026-11-25").
    for line in islice(re.finditer(r"(?m)^.*\S.*$", text), 2):
        title = line.group(0)
        if TITLE_LINE.search(title) and not DOB.search(title) and not NOT_VISIT_DATE.search(title):
            found = DATE_PATTERN.search(title)
            parsed = parse_any_date(found.group(1), order) if found else None
            if found and parsed:
                start = line.start() + found.start(1)
                out.add(
                    "encounter_date", parsed, f"text:chars {start}-{start + len(found.group(1))}", rank=len(ENCOUNTER)
                )
                return


# An operative note's diagnosis before surgery, superseded by the one after it when the note has both.
_PRE_OP = re.compile(r"(?i)^\W*pre[- ]?op(?:erative)?\.?[ \t]+(?:diagnos[ie]s|dx)\b")
_POST_OP = re.compile(r"(?im)^\W*post[- ]?op(?:erative)?\.?[ \t]+(?:diagnos[ie]s|dx)\b")


def _codes(text: str, parts: list[Section], out: Candidates, signals: dict[str, int]) -> None:
    diagnosis_spans: list[tuple[int, int]] = []
    # Only a postoperative diagnosis with a code of its own supersedes ("POSTOPERATIVE DIAGNOSIS: Same." does not).
    superseded_pre_op = any(
        ICD10.search(text[m.end() : (text.find("\n\n", m.end()) + 1 or len(text))]) for m in _POST_OP.finditer(text)
    )

    def diagnosis(code: str, span: tuple[int, int], section: Section | None, *, listed: bool = True) -> None:
        """A valid code read as a diagnosis: a clinical signal, never a procedure; a candidate when asserted."""
        signals["codes"] += 1
        diagnosis_spans.append(span)
        if superseded_pre_op and (
            _PRE_OP.match(_line_of(text, span[0])) or (section is not None and _PRE_OP.match(section.heading))
        ):
            return  # "Preoperative diagnosis: cholelithiasis (K80.20)" where the postoperative one is K80.10
        if listed and assertion(text, span[0], span[1], section) == "present":
            out.add("diagnosis_codes", code, f"text:chars {span[0]}-{span[1]}")

    for match in ICD10.finditer(text):
        code = match.group(1)
        if "O" in code[1:3]:
            if "." not in code:
                continue  # "DOB", "NOV": words, not codes
            code = code[0] + code[1:3].replace("O", "0") + code[3:]
        section = section_at(parts, match.start())
        line = _line_of(text, match.start())
        before = text[max(0, match.start() - 25) : match.start()]
        in_context = (
            (section is not None and section.kind == "diagnosis")
            or bool(DX_LABEL.search(before))
            or text[match.start() - 1 : match.start()] == "("
        )
        if CDT.fullmatch(code) or re.fullmatch(r"[A-Z]\d{4}", code):
            continue  # D2740 / J1100 shapes are procedure codes
        if "." not in code and not in_context:
            continue
        if PX_LABEL.search(before) and not DX_LABEL.search(before):
            continue
        normalised = normalise_icd10(code)
        if valid_icd10(normalised):
            lab_range = "lab" in line.lower() and "ref" in line.lower()  # a reference range's code: no diagnosis
            diagnosis(normalised, match.span(1), section, listed=not lab_range)
    for match in OCR_I_CODE.finditer(text):
        after = text[match.end() : match.end() + 12]
        alone = text[match.start() - 1 : match.start()] == "(" and re.match(r"\)(?![ \t]*[A-Za-z%/])", after)
        labelled = bool(re.search(DX_LABEL.pattern + r"[ \t]*$", text[max(0, match.start() - 25) : match.start()]))
        code = "I" + match.group(1)
        if (alone or labelled) and billable_icd10(code):
            diagnosis(code, match.span(), None)
    for match in UNDOTTED_ICD10.finditer(text):
        # Claims and billing exports write codes without the dot ("Dx: K0530, E119"): only in a diagnosis
        # context (a Dx label earlier on the line, no procedure label after it, or a diagnosis section).
        line_before = text[text.rfind("\n", 0, match.start()) + 1 : match.start()]
        label = list(DX_LABEL.finditer(line_before))
        labelled = bool(label) and not PX_LABEL.search(line_before[label[-1].end() :])
        section = section_at(parts, match.start())
        in_section = section is not None and section.kind == "diagnosis" and not PX_LABEL.search(line_before)
        code = normalise_icd10(match.group(1))
        if (labelled or in_section) and valid_icd10(code):
            diagnosis(code, match.span(1), section)
    for match in CDT.finditer(text):
        if any(s <= match.start() < e for s, e in diagnosis_spans):
            continue
        before = text[max(0, match.start() - 25) : match.start()]
        if DX_LABEL.search(before) and not PX_LABEL.search(before):
            continue
        signals["codes"] += 1
        out.add("procedure_codes", match.group(1), f"text:chars {match.start(1)}-{match.end(1)}")
    for match in CPT.finditer(text):
        section = section_at(parts, match.start())
        line = _line_of(text, match.start())
        line_start = text.rfind("\n", 0, match.start()) + 1
        before_in_line = text[line_start : match.start()]
        labelled = bool(PX_LABEL.search(text[max(line_start, match.start() - 40) : match.start()]))
        if any(s <= match.start() < e for s, e in diagnosis_spans):
            continue
        in_section = (
            section is not None
            and section.kind == "procedure"
            and not ID_PRIMARY.search(line)
            and not re.search(r"(?i)phone|fax|zip|tel|npi|\bid\b|#", before_in_line[-15:])
        )
        if not (labelled or in_section):
            continue
        if match.group(1)[0].isalpha() and not labelled and not in_section:
            continue
        signals["codes"] += 1
        out.add("procedure_codes", match.group(1), f"text:chars {match.start(1)}-{match.end(1)}")


__all__ = ["first_date", "read_text"]
