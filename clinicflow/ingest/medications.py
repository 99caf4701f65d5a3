"""Medications in free clinical text: list items with a dose, ``Rx:`` lines, and drugs named with a dose in prose.

From medication sections (one per list line, ``;`` or comma-separated drug with its own dose) and Plan
sections, ``Rx:`` lines; in narrative, a drug with its dose after ``on`` / ``taking`` / ``using`` /
``receiving`` (``controlled on lisinopril 20 mg daily``) when the clause asserts it (not ``stopped``,
``was on``, ``allergic to``, a negation or a hypothesis) and no listed medication has its name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from clinicflow.ingest.coding import ICD10_SHAPE, PX_LABEL
from clinicflow.ingest.context import Section, assertion, section_at
from clinicflow.ingest.fields import Candidates

_DOSE_UNITS = (
    r"(?:mg|mcg|µg|g|mL|units?|IU|mEq|puffs?|tabs?|tablets?|caps?|micrograms?|milligrams?|grams?|"
    r"millilit(?:er|re)s?)"
)
DOSE = re.compile(rf"(?i)\b\d+(?:\.\d+)?[ \t]*(?:{_DOSE_UNITS}\b|%)")
_FREQUENCY = (
    r"(?:once|twice|three[ \t]+times|four[ \t]+times|daily|nightly|weekly|a[ \t]+day|per[ \t]+day|at[ \t]+bedtime|"
    r"as[ \t]+needed|by[ \t]+mouth|orally|in[ \t]+the[ \t]+(?:morning|evening)|PO|BID|TID|QID|QD|QHS|QAM|QPM|PRN|"
    r"q\d+h|every[ \t]+\d+[ \t]+hours?|(?:every|each)[ \t]+(?:morning|evening|night|day))"
)
_NARRATIVE_DRUG = (
    r"(?P<med>(?P<drug>[A-Za-z][A-Za-z\-]{2,}(?:[ \t]+[A-Za-z][A-Za-z\-]{2,}){0,2})[ \t]+"
    rf"\d+(?:\.\d+)?[ \t]*{_DOSE_UNITS}\b"
    rf"(?:[ \t]+{_FREQUENCY}\b){{0,4}})"
)
NARRATIVE_MEDICATION = re.compile(r"(?i)\b(?:on|taking|takes|using|uses|receiving|receives)[ \t]+" + _NARRATIVE_DRUG)
# The same sentence's list goes on: "taking warfarin 5 mg daily (INR goal 2-3), digoxin 0.125 mg daily and
# furosemide 40 mg every morning" (a parenthesis after a dose is its note).
_NARRATIVE_NEXT = re.compile(
    r"(?i)(?:[ \t]*\([^()\n]{0,60}\))?[ \t]*(?:,[ \t]*(?:and[ \t]+)?|\s+and\s+|,\s+)" + _NARRATIVE_DRUG
)
# Words that start a phrase after "on" but are no drug ("on average 2 tablets", "on the 5 mg dose").
_NOT_DRUGS = frozenset(
    {
        *("the", "a", "an", "his", "her", "their", "its", "this", "that", "these", "those", "average", "about"),
        *("approximately", "around", "day", "days", "dose", "doses", "total", "only", "also", "each", "every"),
        *("per", "which", "with", "and", "or", "of", "to", "is", "was", "were", "be", "been"),
    }
)
# In the clause before the drug: the patient is not taking it now.
_NOT_TAKING = re.compile(
    r"(?i)\b(?:not|stopped|stop|discontinued|discontinue|held|holding|hold|off|was|were|previously|formerly|"
    r"no[ \t]+longer|never|allergic|allergy|allergies|intolerant|reaction|instead[ \t]+of|switch(?:ed)?[ \t]+from|"
    r"consider(?:ing)?|may|might|could|would|recommend(?:ed)?|advise[ds]?|suggest(?:ed)?)\b"
)
RX_LINE = re.compile(r"(?im)^[ \t]*(?:Rx|Prescribed|Start(?:ed)?)[ \t]*:?[ \t]+(.+)$")
_BULLET = re.compile(r"^[ \t]*(?:[-*•·]|\d+[.)]|[a-z][.)])?[ \t]*")


# A comma list item that starts another drug with its own dose ("atorvastatin 20 mg, metformin 500 mg"),
# not a sig ("500 mg, take 1 tablet twice daily") nor a dose's detail ("500 mg, 2 tabs at bedtime").
_NEXT_DRUG = re.compile(
    rf"(?i)^[ \t]*(?:and[ \t]+)?(?!(?:take|takes|taking|give|apply|inhale|use|inject|instill|chew|dissolve|place|"
    rf"max|maximum|up|then|dispense|disp|sig|qty|not|over|may|each|every|one|two|with|for|increase|decrease|"
    rf"titrate|taper|reduce|wean|change|double|half|hold|stop|total)\b)"
    rf"[A-Za-z][A-Za-z\-]{{2,}}(?:[ \t]+(?!(?:to|by|of|at|in|per|the|an?|up|from)\b)[A-Za-z][A-Za-z\-]*){{0,3}}"
    rf"[ \t]+\d+(?:\.\d+)?[ \t]*{_DOSE_UNITS}\b"
)


def _list_items(line: str) -> list[str]:
    """A medication line's items: split at ``;``, at sentences of a plan line, at a comma or ``and`` before
    another drug with its own dose ("Metformin 500mg BID and lisinopril 10 mg daily")."""
    items: list[str] = []
    for item in re.split(r";|\.\s+(?=[A-Z])", line):
        pieces = re.split(r"(,|[ \t]+and[ \t]+)", item)
        current = pieces[0]
        for separator, piece in zip(pieces[1::2], pieces[2::2], strict=True):
            if DOSE.search(current) and _NEXT_DRUG.match(piece):
                items.append(current)
                current = re.sub(r"(?i)^[ \t]*and[ \t]+", "", piece)
            else:
                current += separator + piece
        items.append(current)
    return items


# What a plan or a sentence says before the drug: the item is the drug ("Will add empagliflozin 10 mg daily",
# "He is currently taking metformin 500 mg", "uses atorvastatin 40mg qhs").
_PLAN_VERBS = re.compile(
    r"(?i)^(?:(?:he|she|they|patient|pt)[ \t]+)?(?:is[ \t]+|are[ \t]+)?(?:currently[ \t]+|also[ \t]+|now[ \t]+)?"
    r"(?:will[ \t]+|to[ \t]+|plan[ \t]+to[ \t]+)?"
    r"(?:continue|start(?:ed)?|begin|increase|decrease|resume|switch to|add|uses?|using|takes?|taking|on)\s+"
)
# An item that stops a drug is no medication the patient takes ("Stop Seretide 250 mcg", "D/C metformin 500 mg").
_STOPPED_ITEM = re.compile(
    r"(?i)^(?:stop(?:ped)?|discontinue(?:d)?|d/c|dc'?d|hold|held|cease(?:d)?|off|no[ \t]+longer)\b"
)
# A sentence, not a drug: an item that opens with a pronoun or an article ("His spirometry shows FEV1 48%").
_PROSE_START = re.compile(r"(?i)^(?:he|she|his|her|they|their|the|this|that|we|i|it|patient|pt|there)\b")
# A changed dose: "lisinopril to 20 mg daily", "metformin from 500 mg to 1000 mg BID" -> the new dose.
_DOSE_CHANGE = re.compile(r"(?i)\s+(?:from\s+\d[\d.,]*\s*[a-zµμ]*\s+)?to\s+(?=\d)")


def read_medications(text: str, parts: list[Section], out: Candidates) -> None:
    """Add the medications of ``text`` (split into ``parts``) to ``out``."""
    for section in parts:
        plan = bool(re.search(r"(?i)\bplan\b|\bA/P\b", section.heading))
        if section.kind != "medication" and not plan:
            continue
        body = text[section.start : section.end]
        offset = section.start
        for raw_line in body.split("\n"):
            line_offset = offset
            offset += len(raw_line) + 1
            for item in _list_items(raw_line):
                bare = _BULLET.sub("", item).strip(" ,.\t")
                if _STOPPED_ITEM.match(bare):
                    continue
                cleaned = source = _PLAN_VERBS.sub("", bare)  # source: as it stands in the text, the provenance
                if _PROSE_START.match(cleaned):
                    continue
                if cleaned != bare:
                    cleaned = _DOSE_CHANGE.sub(" ", cleaned, count=1)  # "Increase X to 20 mg" -> "X 20 mg"
                if not cleaned or not re.match(r"[A-Za-z]", cleaned) or ":" in cleaned or not DOSE.search(cleaned):
                    continue
                if ICD10_SHAPE.search(cleaned) or PX_LABEL.search(cleaned):
                    continue  # a diagnosis or a billed procedure line, not a medication
                if re.match(r"(?i)(none|no known|nka|nkda|n/a|see |as above|continue home|allerg|labs?\b)", cleaned):
                    continue
                start = text.find(source, line_offset)
                # A table row's cells (two spaces apart) read as one line of words.
                out.add("medications", " ".join(cleaned.split()), f"text:chars {start}-{start + len(source)}")
    for match in RX_LINE.finditer(text):
        value = match.group(1).strip(" .")
        if DOSE.search(value):
            out.add("medications", value, f"text:chars {match.start(1)}-{match.end(1)}")
    _narrative_medications(text, parts, out)


def _narrative_medications(text: str, parts: list[Section], out: Candidates) -> None:
    """Drugs with a dose named in prose ("on apixaban 5 mg twice daily"), asserted and not listed already."""
    listed = {_drug_key(c.value) for c in out.found.get("medications", [])}
    for match, verb_at in _narrative_matches(text):
        drug, start, end = match.group("drug"), match.start("med"), match.end("med")
        section = section_at(parts, start)
        if section is not None and (
            section.kind in ("medication", "family") or re.search(r"(?i)allerg|plan", section.heading)
        ):
            continue  # read as a list above, a relative's, or an allergy
        if section is not None and section.kind == "past":
            # "hypertension, controlled on lisinopril 20 mg" in a history is taken now: the clause decides.
            section = None
        if drug.split()[0].lower() in _NOT_DRUGS or _drug_key(drug) in listed:
            continue
        line_start = text.rfind("\n", 0, verb_at) + 1
        clause = re.split(r"[.;:]\s", text[line_start:verb_at])[-1]
        if _NOT_TAKING.search(clause) or assertion(text, start, end, section) != "present":
            continue
        listed.add(_drug_key(drug))
        out.add("medications", match.group("med").strip(), f"text:chars {start}-{end}")


def _narrative_matches(text: str) -> Iterator[tuple[re.Match[str], int]]:
    """Each drug a sentence says is taken, and the drugs listed after it in the same sentence, with where the
    sentence's verb stands (its clause decides for the whole list: "was on X 5 mg and Y 10 mg")."""
    for match in NARRATIVE_MEDICATION.finditer(text):
        yield match, match.start()
        following = _NARRATIVE_NEXT.match(text, match.end("med"))
        while following is not None and following.group("drug").split()[0].lower() not in _NOT_DRUGS:
            yield following, match.start()
            following = _NARRATIVE_NEXT.match(text, following.end("med"))


def _drug_key(value: str) -> str:
    return re.split(r"[\s,]+", str(value).strip().lower())[0]
