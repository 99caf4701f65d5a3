"""What the readers share: code systems by URI or OID, code shapes in text, the error of a structure that fails."""

from __future__ import annotations

import re

from clinicflow.core.errors import ClinicflowError

ICD10CM_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10-cm", "urn:oid:2.16.840.1.113883.6.90")
PROCEDURE_SYSTEMS = (
    "http://www.ama-assn.org/go/cpt",
    "urn:oid:2.16.840.1.113883.6.12",
    "http://www.ada.org/cdt",
    "urn:oid:2.16.840.1.113883.6.13",
    "urn:oid:2.16.840.1.113883.6.285",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
)
SSN_SYSTEMS = ("http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1")
SSN_OID = "2.16.840.1.113883.4.1"
# HL7 table 0203 identifier types: the medical record number first; without one, the patient's own identifier types
# (internal, external, patient number, temporary MRN, enterprise), as many feeds type their only id. Never SS, AN, MB.
RECORD_NUMBER_TYPES = ("MR", "MRN")
PATIENT_NUMBER_TYPES = ("PI", "PT", "PN", "MRT", "EPI")


def patient_identifier_picks(types: list[str]) -> list[int]:
    """The positions of the identifiers to read of a patient's typed list: its MR ones, else its patient-number ones."""
    upper = [t.upper() for t in types]
    for wanted in (RECORD_NUMBER_TYPES, PATIENT_NUMBER_TYPES):
        picks = [i for i, t in enumerate(upper) if t in wanted]
        if picks:
            return picks
    return []


# An ICD-10-CM code's shape in text (validated against the code set where it is read as a diagnosis).
ICD10_SHAPE = re.compile(r"(?<![A-Za-z0-9.\-])([A-TV-Z][0-9][0-9AB](?:\.[0-9A-TV-Z]{1,4})?)(?![A-Za-z0-9]|\.\d)")
# A label that makes the code after it a billed procedure (CPT, HCPCS, CDT).
PX_LABEL = re.compile(
    r"(?i)(?:\b(?:CPT|HCPCS|CDT|procedure codes?|billing codes?|code)\b|\bE[&/]M\b)"
    r"[ \t]*(?:codes?)?[ \t]*[:#]?"
)


class StructureError(ClinicflowError, ValueError):
    """A structured document that does not parse or validate (message: where, never content)."""
