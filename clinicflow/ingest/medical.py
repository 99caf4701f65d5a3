"""The ``Medical`` record: what extraction produces from one staged document.

One row per document in ``ingest.medical`` (docs/ingest.md lists the columns):
patient identifiers (``patient_id`` such as an MRN, ``patient_name``,
``date_of_birth``), the ``encounter_date``, the ``provider``, ICD-10
``diagnosis_codes``, CPT/HCPCS ``procedure_codes``, ``medications`` and a
short free-text ``summary``.

Extractors (rules or a model) name fields inconsistently ("MRN",
"patientId", "Dx codes"...). :func:`normalise_fields` maps them onto the
model's fields by the aliases declared in :data:`FIELD_ALIASES`, never by
another model call.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from clinicflow.ingest.fields import parse_any_date

FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "patient_id": (
        "patient_id",
        "mrn",
        "medical_record_number",
        "patient_number",
        "patient_no",
        "chart_number",
        "record_number",
        "pid",
    ),
    "patient_name": ("patient_name", "name", "patient", "full_name", "patient_full_name"),
    "date_of_birth": ("date_of_birth", "dob", "birth_date", "birthdate", "born"),
    "encounter_date": (
        "encounter_date",
        "date_of_service",
        "dos",
        "visit_date",
        "service_date",
        "date",
        "report_date",
        "exam_date",
    ),
    "provider": (
        "provider",
        "physician",
        "doctor",
        "attending",
        "attending_physician",
        "clinician",
        "referring_physician",
        "provider_name",
        "dentist",
    ),
    "diagnosis_codes": (
        "diagnosis_codes",
        "diagnoses",
        "diagnosis",
        "icd10",
        "icd_10",
        "icd10_codes",
        "icd_codes",
        "dx",
        "dx_codes",
    ),
    "procedure_codes": (
        "procedure_codes",
        "procedures",
        "procedure",
        "cpt",
        "cpt_codes",
        "hcpcs",
        "px",
        "px_codes",
        "cdt_codes",
    ),
    "medications": ("medications", "medication", "meds", "drugs", "prescriptions", "rx"),
    "summary": ("summary", "free_text_summary", "assessment", "impression", "notes", "note", "narrative"),
    "provenance": ("provenance",),
}

_ALIAS_TO_FIELD = {alias: field for field, aliases in FIELD_ALIASES.items() for alias in aliases}


def canonical_key(key: str) -> str:
    """``"Patient ID"``, ``"patientId"``, ``"patient-id"`` → ``"patient_id"``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key.strip())
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def normalise_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Rename known aliases onto Medical's fields; unknown keys are dropped, first alias present wins."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        field = _ALIAS_TO_FIELD.get(canonical_key(str(key)))
        if field is not None and field not in out and value not in (None, "", []):
            out[field] = value
    return out


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = re.split(r"[;,\n]", value)
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of strings or a comma-separated string")
    items = []
    for item in value:
        if isinstance(item, dict):  # {"code": "E11.9", "description": ...}
            item = item.get("code") or item.get("name") or ""
        text = str(item).strip()
        if text and text not in items:
            items.append(text)
    return items


class Medical(BaseModel):
    """The structured content of one clinical document."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    patient_id: str | None = Field(default=None, max_length=100, description="Patient identifier (MRN, chart no.).")
    patient_name: str | None = Field(default=None, max_length=200)
    date_of_birth: date | None = None
    encounter_date: date | None = Field(default=None, description="Date of the visit, exam or report.")
    provider: str | None = Field(default=None, max_length=200, description="Treating or reporting clinician.")
    diagnosis_codes: list[str] = Field(default_factory=list, description="ICD-10-CM codes.")
    procedure_codes: list[str] = Field(default_factory=list, description="CPT / HCPCS / CDT codes.")
    medications: list[str] = Field(default_factory=list)
    summary: str | None = Field(default=None, max_length=4000, description="Short free-text summary.")
    provenance: dict[str, str] = Field(
        default_factory=dict, description="Per field: extractor, parser and segment / character span."
    )

    @field_validator("diagnosis_codes", "procedure_codes", "medications", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> list[str]:
        return _as_list(value)

    @field_validator("date_of_birth", "encounter_date", mode="before")
    @classmethod
    def _dates(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            # A model copying the document's "02/10/2024" is read in the document's own order (context).
            order = (info.context or {}).get("date_order", "mdy")
            parsed = parse_any_date(value, order)
            if parsed is None and order is None and parse_any_date(value, "mdy") is not None:
                raise ValueError("a date readable both ways in a document that writes dates both ways")
            return parsed or value  # an unknown format stays a string: pydantic names the field
        return value

    @field_validator("patient_id", "patient_name", "provider", "summary", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value

    @field_validator("diagnosis_codes")
    @classmethod
    def _icd10(cls, codes: list[str]) -> list[str]:
        return [c.upper() for c in codes]

    def is_empty(self) -> bool:
        return not any(self.model_dump(exclude_defaults=True, exclude={"provenance"}).values())


# The fields an extraction must produce (a missing one is a "missing-field" dead letter).
REQUIRED_FIELDS = ("patient_id",)
