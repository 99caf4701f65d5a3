"""What the readers share: code systems by URI or OID, code shapes in text, the error of a structure that fails."""

from __future__ import annotations

import re
from functools import lru_cache

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


@lru_cache(maxsize=1)
def icd10cm_codes() -> frozenset[str]:
    """The ICD-10-CM code set simple-icd-10-cm ships (its code list: categories to 7th-character codes).

    Read from the list file rather than through the package's API, which parses the full tabular XML on import
    (1.5 to 2 s of CPU in every process that extracts). The package is found without importing it:
    ``importlib.resources.files("simple_icd_10_cm.data")`` would import ``simple_icd_10_cm`` first, and so parse.
    """
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("simple_icd_10_cm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the ICD-10-CM code list needs the simple-icd-10-cm package (a project dependency)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    lists = sorted(data.glob("code-list*.txt"), key=lambda p: p.name)
    listing = lists[-1]
    return frozenset(
        line.strip()
        for line in listing.read_text(encoding="utf-8").splitlines()
        if line.strip() and "-" not in line and not line.strip().isdigit()
    )


def billable_icd10(code: str) -> bool:
    """A valid code with no subcodes (a reading of "(125.4)" as the category I25.4 is more likely a number)."""
    key = code.replace(".", "")
    return key in icd10cm_codes() and key not in _categories()


@lru_cache(maxsize=1)
def _categories() -> frozenset[str]:
    """Every code of the set that has subcodes (the prefixes of the longer codes)."""
    return frozenset(code[:n] for code in icd10cm_codes() for n in range(3, len(code)))


def valid_icd10(code: str) -> bool:
    return code.replace(".", "").upper() in icd10cm_codes()
