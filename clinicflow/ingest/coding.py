"""What the structured readers share: code systems by URI or OID, and the error of a document that does not parse."""

from __future__ import annotations

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


class StructureError(ClinicflowError, ValueError):
    """A structured document that does not parse or validate (message: where, never content)."""
