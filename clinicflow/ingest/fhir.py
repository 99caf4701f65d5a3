"""FHIR JSON (R4, R4B or R5; a Bundle, one resource, or NDJSON) → field candidates, each resource validated.

Its R4B models first, else its R5 models (an R5 sender's ``medication.concept``, ``actualPeriod``,
``actor``): Patient (identifier with type ``MR``, never an SSN system), Encounter, Condition
(ICD-10-CM codings; refuted / entered-in-error skipped), Procedure (CPT / CDT / HCPCS codings),
MedicationStatement / MedicationRequest (text or display with dosage), Practitioner. The resources must be about
one patient (a bulk export's file of many patients is refused, never merged into one row).
"""

from __future__ import annotations

import json
import re
from typing import Any

from clinicflow.core.errors import ClinicflowError
from clinicflow.ingest.coding import (
    ICD10CM_SYSTEMS,
    PROCEDURE_SYSTEMS,
    SSN_SYSTEMS,
    StructureError,
    patient_identifier_picks,
)
from clinicflow.ingest.fields import Ambiguous, Candidates, normalise_icd10, parse_any_date


def _codings(concept: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((concept or {}).get("coding") or [])


def _concept_text(concept: dict[str, Any] | None) -> str:
    if not concept:
        return ""
    return str(concept.get("text") or next((c.get("display") for c in _codings(concept) if c.get("display")), ""))


def _validate_fhir(resource: dict[str, Any], where: str) -> str:
    """The FHIR release ``resource`` validates under (``R4B``, else ``R5``); the fields at fault if neither."""
    from fhir.resources import get_fhir_model_class as r5_model_class
    from fhir.resources.R4B import get_fhir_model_class as r4b_model_class
    from pydantic import ValidationError

    kind = str(resource.get("resourceType"))
    faults: list[str] = []
    for release, model_class in (("R4B", r4b_model_class), ("R5", r5_model_class)):
        try:
            model = model_class(kind)
        except KeyError:
            continue
        try:
            model.model_validate(resource)
            return release
        except ValidationError as exc:
            # Where and what kind of fault, never the value (it may be patient data).
            fields = [".".join(str(part) for part in e["loc"]) + f" ({e['type']})" for e in exc.errors()[:3]]
            faults.append(f"{release}: " + ", ".join(fields) + (" ..." if exc.error_count() > 3 else ""))
    if not faults:
        raise StructureError(f"{where}: unknown FHIR resource type")
    raise StructureError(f"{where}: not a valid FHIR R4B or R5 resource ({'; '.join(faults)})")


def _medication_concept(resource: dict[str, Any]) -> tuple[str, str]:
    """The medication's name and where it was: R4's ``medicationCodeableConcept``/``medicationReference``, R5's
    ``medication`` (a CodeableReference)."""
    if resource.get("medicationCodeableConcept"):
        return _concept_text(resource["medicationCodeableConcept"]), "medicationCodeableConcept"
    if resource.get("medicationReference"):
        return str(resource["medicationReference"].get("display") or ""), "medicationReference"
    medication = resource.get("medication") or {}
    if medication.get("concept"):
        return _concept_text(medication["concept"]), "medication.concept"
    return str((medication.get("reference") or {}).get("display") or ""), "medication.reference"


class SeveralPatients(Ambiguous):
    """A FHIR document whose resources are about more than one patient (message: their references, keys only)."""

    def __init__(self, references: set[str]) -> None:
        shown = ", ".join(sorted(references)[:5]) + (", ..." if len(references) > 5 else "")
        ClinicflowError.__init__(
            self, f"patient_id: resources of {len(references)} patients ({shown}); a document is one patient's record"
        )
        self.field_name, self.count = "patient_id", len(references)


_PATIENT_REFERENCE = re.compile(r"(?:^|/)(Patient/[^/]+)(?:/_history/[^/]*)?$")


def _entries(root: Any, where: str) -> list[tuple[dict[str, Any], str | None]]:
    """(resource, fullUrl) of a Bundle's entries, or of one resource."""
    if not isinstance(root, dict):
        raise StructureError(f"{where} is not a FHIR resource (a JSON object)")
    if root.get("resourceType") == "Bundle":
        return [
            (e["resource"], e.get("fullUrl"))
            for e in root.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    return [(root, None)]


def fhir_entries(text: str) -> list[tuple[dict[str, Any], str | None]]:
    """The resources of FHIR JSON: a Bundle, one resource, or NDJSON (a bulk export: one resource or Bundle a line)."""
    try:
        root = json.loads(text)
    except ValueError:
        return _ndjson_entries(text)
    return _entries(root, "FHIR JSON")


def _ndjson_entries(text: str) -> list[tuple[dict[str, Any], str | None]]:
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(lines) < 2 or not lines[0][1].lstrip().startswith("{"):
        raise StructureError("FHIR JSON does not parse")
    entries: list[tuple[dict[str, Any], str | None]] = []
    for number, line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            raise StructureError(f"FHIR NDJSON line {number} does not parse") from None
        entries.extend(_entries(item, f"FHIR NDJSON line {number}"))
    return entries


def _patients(entries: list[tuple[dict[str, Any], str | None]]) -> set[str]:
    """The patients the resources are about: each Patient resource, and each patient a subject refers to."""
    known: dict[str, str] = {}
    for index, (resource, full_url) in enumerate(entries):
        if resource.get("resourceType") == "Patient":
            key = f"Patient/{resource['id']}" if resource.get("id") else (full_url or f"Patient #{index + 1}")
            known[key] = key
            if full_url:
                known[full_url] = key
                relative = _PATIENT_REFERENCE.search(full_url)
                if relative:
                    known[relative.group(1)] = key
    patients = set(known.values())
    for resource, _ in entries:
        for field in ("subject", "patient"):
            reference = resource.get(field)
            ref = reference.get("reference") if isinstance(reference, dict) else None
            if not isinstance(ref, str) or not ref:
                continue
            relative = _PATIENT_REFERENCE.search(ref)
            if ref in known:
                patients.add(known[ref])
            elif relative:
                patients.add(known.get(relative.group(1), relative.group(1)))
    return patients


def read_fhir(text: str, out: Candidates) -> None:
    entries = fhir_entries(text)
    patients = _patients(entries)
    if len(patients) > 1:
        # Merged, one patient's codes and medications would be written under another's name.
        raise SeveralPatients(patients)
    for index, resource in enumerate(resource for resource, _ in entries):
        kind = str(resource.get("resourceType"))
        where = f"fhir:{kind}/{resource.get('id') or index}"
        _validate_fhir(resource, where)
        if kind == "Patient":
            _fhir_patient(resource, where, out)
        elif kind == "Encounter":
            period = "period" if resource.get("period") else "actualPeriod"  # R5 renamed it
            start = (resource.get(period) or {}).get("start")
            out.add("encounter_date", parse_any_date(str(start)[:10]) if start else None, f"{where}.{period}.start")
            for participant in resource.get("participant") or []:
                person = "individual" if participant.get("individual") else "actor"
                display = (participant.get(person) or {}).get("display")
                out.add("provider", display, f"{where}.participant.{person}")
        elif kind == "Practitioner":
            for name in resource.get("name") or []:
                text_name = name.get("text") or " ".join([*(name.get("given") or []), name.get("family") or ""])
                out.add("provider", text_name.strip(), f"{where}.name", rank=1)
                break
        elif kind == "Condition":
            statuses = {
                c.get("code") for key in ("verificationStatus", "clinicalStatus") for c in _codings(resource.get(key))
            }
            if statuses & {"refuted", "entered-in-error", "resolved", "inactive"}:
                continue
            for i, coding in enumerate(_codings(resource.get("code"))):
                if coding.get("system") in ICD10CM_SYSTEMS and coding.get("code"):
                    out.add("diagnosis_codes", normalise_icd10(coding["code"]), f"{where}.code.coding[{i}]")
        elif kind == "Procedure":
            if resource.get("status") in ("not-done", "entered-in-error"):
                continue
            for i, coding in enumerate(_codings(resource.get("code"))):
                if coding.get("system") in PROCEDURE_SYSTEMS and coding.get("code"):
                    out.add("procedure_codes", coding["code"], f"{where}.code.coding[{i}]")
        elif kind in ("MedicationStatement", "MedicationRequest"):
            if resource.get("status") in ("entered-in-error", "not-taken", "cancelled"):
                continue
            name, found_in = _medication_concept(resource)
            if not name:
                continue
            dosage = (resource.get("dosage") or resource.get("dosageInstruction") or [{}])[0]
            dose = dosage.get("text") or ""
            if not dose:
                quantity = ((dosage.get("doseAndRate") or [{}])[0]).get("doseQuantity") or {}
                dose = f"{quantity.get('value', '')} {quantity.get('unit', '')}".strip()
            out.add("medications", f"{name} {dose}".strip(), f"{where}.{found_in}")


def _fhir_patient(resource: dict[str, Any], where: str, out: Candidates) -> None:
    identifiers = [i for i in resource.get("identifier") or [] if isinstance(i, dict)]
    typed = [(i, ident) for i, ident in enumerate(identifiers) if _codings(ident.get("type"))]
    if typed:  # the MR identifier(s), else the patient-number ones (PI, PT...); never an SSN
        kinds = [
            "SS"
            if ident.get("system") in SSN_SYSTEMS
            else next((str(c.get("code") or "") for c in _codings(ident.get("type")) if c.get("code")), "")
            for ident in identifiers
        ]
        picks = patient_identifier_picks(kinds)
    else:
        picks = [0] if len(identifiers) == 1 and identifiers[0].get("system") not in SSN_SYSTEMS else []
    for i in picks:
        out.add("patient_id", identifiers[i].get("value"), f"{where}.identifier[{i}]")
    names = resource.get("name") or []
    official = [n for n in names if n.get("use") == "official"] or names[:1]
    for name in official:
        text_name = " ".join([*(name.get("given") or []), name.get("family") or ""]).strip() or name.get("text")
        out.add("patient_name", text_name, f"{where}.name")
    out.add("date_of_birth", parse_any_date(str(resource.get("birthDate") or "")), f"{where}.birthDate")
