"""Structured clinical formats read as structures: HL7 v2 (python-hl7), FHIR JSON (fhir.resources), C-CDA, CSV.

Each reader fills a :class:`~clinicflow.ingest.fields.Candidates` with
provenance naming the segment / resource / element it read:

- HL7 v2: PID-3 repetitions by identifier type code (``MR``; ``SS`` never;
  an untyped single repetition is accepted), PID-5 name, PID-7 birth date,
  PV1-7 attending and PV1-44 admit time (else EVN-2, else MSH-7), DG1-3
  diagnoses, PR1-3 procedures, OBR-4 when coded in CPT, OBR-7 observation
  time, RXE-2/RXO-1 give codes with dose; escape sequences decoded; CR, LF
  or CRLF segment separators.
- FHIR JSON (R4, R4B or R5): :mod:`clinicflow.ingest.fhir`.
- C-CDA: recordTarget id (an SSN root never), name, birthTime; encounter or
  service-event time; author; Problems / Procedures / Medications sections by
  template id (negated entries skipped).
- CSV exports: columns mapped by header name (``MRN``, ``DOB``, ``ICD10``...).
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from typing import Any

from clinicflow.ingest.coding import SSN_OID, StructureError, patient_identifier_picks
from clinicflow.ingest.fhir import read_fhir
from clinicflow.ingest.fields import Candidates, compact_date, normalise_icd10, numeric_date_order, parse_any_date

CCDA_PROBLEMS = ("2.16.840.1.113883.10.20.22.2.5.1", "2.16.840.1.113883.10.20.22.2.5")
CCDA_PROCEDURES = ("2.16.840.1.113883.10.20.22.2.7.1", "2.16.840.1.113883.10.20.22.2.7")
CCDA_MEDICATIONS = ("2.16.840.1.113883.10.20.22.2.1.1", "2.16.840.1.113883.10.20.22.2.1")


def detect(text: str) -> str | None:
    """``hl7`` / ``fhir`` / ``ccda`` / ``csv`` / None (free text) by the content."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("MSH|", "FHS|", "BHS|")):  # a message, or a batch file of them
        return "hl7"
    if stripped.startswith("{") and '"resourceType"' in stripped[:2000]:
        return "fhir"
    if stripped.startswith("<") and "ClinicalDocument" in stripped[:3000]:
        return "ccda"
    first, _, rest = stripped.partition("\n")
    if first.count(",") >= 2 and rest and rest.split("\n", 1)[0].count(",") >= first.count(","):
        header = {_column(c) for c in next(csv.reader([first]))}
        if header & set(CSV_COLUMNS):
            return "csv"
    return None


def read_structured(kind: str, text: str, out: Candidates) -> None:
    {"hl7": read_hl7, "fhir": read_fhir, "ccda": read_ccda, "csv": read_csv}[kind](text, out)


# --------------------------------------------------------------------------- HL7 v2


def _components(message: Any, field: Any) -> list[list[str]]:
    """Repetitions of a field, each a list of unescaped components."""
    return [[message.unescape(c) for c in rep.split("^")] for rep in str(field).split("~")]


def _get(parts: list[str], index: int) -> str:
    return parts[index].strip() if len(parts) > index else ""


def _person(parts: list[str], family_at: int) -> str:
    """XPN / XCN components → ``Given Middle Family``."""
    family, given, middle = _get(parts, family_at), _get(parts, family_at + 1), _get(parts, family_at + 2)
    return " ".join(p for p in (given, middle, family) if p)


_BATCH_ENVELOPE = ("FHS|", "BHS|", "BTS|", "FTS|")


def read_hl7(text: str, out: Candidates) -> None:
    import hl7

    normalised = re.sub(r"\r\n|\n|\r", "\r", text.strip("\ufeff \t\r\n"))
    # A batch file's envelope (FHS/BHS ... BTS/FTS) carries no patient: its messages are read as one document,
    # so two patients in one batch are conflicting candidates, like any export of several patients.
    normalised = "\r".join(s for s in normalised.split("\r") if s[:4] not in _BATCH_ENVELOPE)
    if not normalised.startswith("MSH|"):
        raise StructureError("HL7 v2 batch holds no message (no MSH segment)")
    try:
        message = hl7.parse(normalised)
    except Exception as exc:  # noqa: BLE001 - python-hl7 raises several types for a bad message
        raise StructureError(f"HL7 v2 message does not parse ({type(exc).__name__})") from None
    dates: dict[str, Any] = {}
    for index, segment in enumerate(message):
        name = str(segment[0])
        fields = [segment[i] if i < len(segment) else "" for i in range(max(len(segment), 50))]
        where = f"hl7:{name}#{index + 1}"
        if name == "MSH":
            dates.setdefault("MSH-7", compact_date(str(fields[7])))  # python-hl7 counts MSH-1
        elif name == "EVN":
            dates.setdefault("EVN-2", compact_date(str(fields[2])))
        elif name == "PID":
            reps = _components(message, fields[3])
            # Typed: the MR number(s), else the patient-number types; never SS.
            if any(_get(r, 4) for r in reps):
                chosen = [(i, reps[i]) for i in patient_identifier_picks([_get(r, 4) for r in reps])]
            else:
                chosen = [(0, reps[0])] if len(reps) == 1 else []
            for i, rep in chosen:
                out.add("patient_id", _get(rep, 0), f"{where}:PID-3[{i + 1}]")
            for i, rep in enumerate(_components(message, fields[5])):
                if _get(rep, 6) in ("", "L"):  # the legal name
                    out.add("patient_name", _person(rep, 0), f"{where}:PID-5[{i + 1}]")
                    break
            out.add("date_of_birth", compact_date(str(fields[7])), f"{where}:PID-7")
        elif name == "PV1":
            for rep in _components(message, fields[7]):
                out.add("provider", _person(rep, 1), f"{where}:PV1-7")
            dates["PV1-44"] = compact_date(str(fields[44]))
        elif name == "DG1":
            code = _components(message, fields[3])[0]
            if _get(code, 0) and _get(code, 2).upper() in ("I10", "ICD10", "ICD-10-CM", "I10C", ""):
                out.add("diagnosis_codes", normalise_icd10(_get(code, 0)), f"{where}:DG1-3")
        elif name == "PR1":
            code = _components(message, fields[3])[0]
            if _get(code, 0):
                out.add("procedure_codes", _get(code, 0), f"{where}:PR1-3")
            dates.setdefault("PR1-5", compact_date(str(fields[5])))
        elif name == "OBR":
            code = _components(message, fields[4])[0]
            if _get(code, 2).upper() in ("C4", "CPT", "CPT4"):
                out.add("procedure_codes", _get(code, 0), f"{where}:OBR-4")
            dates.setdefault("OBR-7", compact_date(str(fields[7])))
            for rep in _components(message, fields[16]):
                out.add("provider", _person(rep, 1), f"{where}:OBR-16", rank=1)
        elif name in ("RXE", "RXO"):
            give = _components(message, fields[2] if name == "RXE" else fields[1])[0]
            drug = _get(give, 1) or _get(give, 0)
            amount, units = (fields[3], fields[5]) if name == "RXE" else (fields[2], fields[4])
            unit = _components(message, units)[0]
            dose = " ".join(p for p in (str(amount).strip(), _get(unit, 1) or _get(unit, 0)) if p)
            out.add("medications", f"{drug} {dose}".strip(), f"{where}:{name}-{2 if name == 'RXE' else 1}")
    for key in ("PV1-44", "OBR-7", "PR1-5", "EVN-2", "MSH-7"):
        if dates.get(key):
            out.add("encounter_date", dates[key], f"hl7:{key}")
            break


# --------------------------------------------------------------------------- C-CDA

_V3 = "{urn:hl7-org:v3}"


def _ccda_name(element: ET.Element | None) -> str:
    if element is None:
        return ""
    given = [g.text or "" for g in element.findall(f"{_V3}given")]
    family = element.findtext(f"{_V3}family") or ""
    text = " ".join(p.strip() for p in (*given, family) if p and p.strip())
    return text or (element.text or "").strip()


_MRN_AUTHORITY = re.compile(r"(?i)\bMRN?\b|medical[ _]record")


def read_ccda(text: str, out: Candidates) -> None:
    try:
        root = ET.fromstring(text.lstrip("\ufeff").encode("utf-8"))
    except ET.ParseError:
        raise StructureError("C-CDA XML does not parse") from None
    role = root.find(f"{_V3}recordTarget/{_V3}patientRole")
    if role is not None:
        ids = [
            (i, ident)
            for i, ident in enumerate(role.findall(f"{_V3}id"))
            if ident.get("root") != SSN_OID and ident.get("extension")
        ]
        # Several ids (an EHR's MRN beside its enterprise or another facility's): the one its sender names as the
        # medical record number (assigningAuthorityName), if one does; else all of them, which conflict.
        named = [(i, ident) for i, ident in ids if _MRN_AUTHORITY.search(ident.get("assigningAuthorityName") or "")]
        for i, ident in named if len(ids) > 1 and named else ids:
            out.add("patient_id", ident.get("extension"), f"ccda:recordTarget/patientRole/id[{i + 1}]")
        patient = role.find(f"{_V3}patient")
        if patient is not None:
            out.add("patient_name", _ccda_name(patient.find(f"{_V3}name")), "ccda:recordTarget/patient/name")
            birth = patient.find(f"{_V3}birthTime")
            out.add(
                "date_of_birth",
                compact_date(birth.get("value", "")) if birth is not None else None,
                "ccda:recordTarget/patient/birthTime",
            )
    for path in (
        f"{_V3}componentOf/{_V3}encompassingEncounter/{_V3}effectiveTime",
        f"{_V3}documentationOf/{_V3}serviceEvent/{_V3}effectiveTime",
    ):
        element = root.find(path)
        if element is not None:
            low = element.find(f"{_V3}low")
            value = (low if low is not None else element).get("value", "")
            out.add("encounter_date", compact_date(value), f"ccda:{path.replace(_V3, '')}")
    for path in (
        f"{_V3}componentOf/{_V3}encompassingEncounter/{_V3}encounterParticipant/{_V3}assignedEntity/"
        f"{_V3}assignedPerson/{_V3}name",
        f"{_V3}author/{_V3}assignedAuthor/{_V3}assignedPerson/{_V3}name",
    ):
        out.add("provider", _ccda_name(root.find(path)), f"ccda:{path.replace(_V3, '')}", rank=1)
    for section in root.iter(f"{_V3}section"):
        templates = {t.get("root") for t in section.findall(f"{_V3}templateId")}
        if templates & set(CCDA_PROBLEMS):
            _ccda_codes(section, "diagnosis_codes", ("2.16.840.1.113883.6.90",), "problems", out)
        elif templates & set(CCDA_PROCEDURES):
            _ccda_codes(
                section,
                "procedure_codes",
                ("2.16.840.1.113883.6.12", "2.16.840.1.113883.6.13", "2.16.840.1.113883.6.285"),
                "procedures",
                out,
            )
        elif templates & set(CCDA_MEDICATIONS):
            for i, entry in enumerate(section.findall(f"{_V3}entry")):
                administration = entry.find(f"{_V3}substanceAdministration")
                if administration is None or administration.get("negationInd") == "true":
                    continue
                code = administration.find(f".//{_V3}manufacturedMaterial/{_V3}code")
                name = "" if code is None else (code.get("displayName") or code.findtext(f"{_V3}originalText") or "")
                dose = administration.find(f"{_V3}doseQuantity")
                amount = "" if dose is None else f"{dose.get('value', '')} {dose.get('unit', '')}".strip()
                out.add("medications", f"{name} {amount}".strip(), f"ccda:section[medications]/entry[{i + 1}]")


def _ccda_codes(section: ET.Element, field_name: str, systems: tuple[str, ...], label: str, out: Candidates) -> None:
    for i, entry in enumerate(section.findall(f"{_V3}entry")):
        negated = any(e.get("negationInd") == "true" for e in entry.iter())
        if negated:
            continue
        for element in entry.iter():
            if (
                element.tag in (f"{_V3}code", f"{_V3}value", f"{_V3}translation")
                and element.get("codeSystem") in systems
                and element.get("code")
            ):
                code = element.get("code", "")
                out.add(
                    field_name,
                    normalise_icd10(code) if field_name == "diagnosis_codes" else code,
                    f"ccda:section[{label}]/entry[{i + 1}]",
                )


# --------------------------------------------------------------------------- CSV


def _column(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


CSV_COLUMNS: dict[str, str] = {
    **dict.fromkeys(
        ("mrn", "patient_id", "patientid", "medical_record_number", "chart_no", "chart_number", "chart"), "patient_id"
    ),
    **dict.fromkeys(("patient_name", "patient", "name"), "patient_name"),
    **dict.fromkeys(("dob", "date_of_birth", "birth_date", "birthdate"), "date_of_birth"),
    **dict.fromkeys(
        (
            "collection_date",
            "collected",
            "service_date",
            "date_of_service",
            "dos",
            "visit_date",
            "encounter_date",
            "result_date",
        ),
        "encounter_date",
    ),
    **dict.fromkeys(("provider", "ordering_provider", "physician", "ordering_physician", "attending"), "provider"),
    **dict.fromkeys(("icd10", "icd_10", "icd10_code", "dx", "dx_code", "diagnosis_code"), "diagnosis_codes"),
    **dict.fromkeys(("cpt", "cpt_code", "procedure_code", "cdt", "hcpcs"), "procedure_codes"),
    **dict.fromkeys(("medication", "drug", "medication_name"), "medications"),
}


def read_csv(text: str, out: Candidates) -> None:
    order = numeric_date_order(text)  # a UK practice's export writes 14/03/1972: its every date day first
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = {name: CSV_COLUMNS.get(_column(name or "")) for name in reader.fieldnames or []}
    first_last = {_column(n or ""): n for n in reader.fieldnames or []}
    for row_number, row in enumerate(reader, start=2):
        for column, field_name in columns.items():
            value = (row.get(column) or "").strip()
            if not field_name or not value:
                continue
            where = f"csv:row {row_number}:{column}"
            if field_name in ("date_of_birth", "encounter_date"):
                out.add(field_name, parse_any_date(value, order), where)
            elif field_name == "diagnosis_codes":
                out.add(field_name, normalise_icd10(value), where)
            else:
                out.add(field_name, value, where)
        if "last_name" in first_last and "first_name" in first_last:
            name = f"{row.get(first_last['first_name']) or ''} {row.get(first_last['last_name']) or ''}".strip()
            out.add("patient_name", name, f"csv:row {row_number}:first_name+last_name")
