"""Extractors: staged document text → :class:`~clinicflow.ingest.medical.Medical`.

One protocol, two implementations:

- :class:`RulesExtractor` (``rules``): labelled fields and code patterns by
  regular expression; no model, runs on a fresh machine;
- :class:`LLMExtractor` (``llm``): any OpenAI-compatible chat endpoint
  (OpenAI, vLLM, Ollama, llama.cpp server) through the ``openai`` client.
  Documents go in batches as one JSON request; any document the batch answer
  lacks or gets wrong is asked again on its own (per-record fallback). The
  answer is validated against ``Medical`` after alias normalisation. Only
  transient errors (connection, timeout, 429, 5xx) are retried, by
  :func:`clinicflow.core.retry.call_with_retry`; other failures become dead
  letters with a reason code.

Every outcome is an :class:`Extraction`: a ``Medical`` or a reason code
(``malformed-output``, ``missing-field``, ``invalid-field``,
``llm-unavailable``, ``llm-error``). Extractors never raise for one bad
document, and never log document content.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from clinicflow.core.retry import PermanentError, TransientError, call_with_retry, is_transient
from clinicflow.ingest.medical import REQUIRED_FIELDS, Medical, normalise_fields, parse_date

PROMPT_VERSION = "medical-v1"


@dataclass(frozen=True)
class DocumentText:
    document_id: str
    sha256: str
    text: str


@dataclass
class Extraction:
    document_id: str
    medical: Medical | None = None
    reason: str | None = None
    message: str = ""
    payload: str | None = None  # the raw model answer of a malformed output (kept in the dead letter, never logged)

    @property
    def ok(self) -> bool:
        return self.medical is not None


class DocumentExtractor(Protocol):
    name: str
    model: str
    prompt_version: str

    def extract(self, documents: list[DocumentText]) -> list[Extraction]:
        """One outcome per document, in order."""
        ...


def validate_output(document_id: str, raw: Any, payload: str | None = None) -> Extraction:
    """A raw field dict (any field names) → a validated Medical, or the reason it is not one."""
    if not isinstance(raw, dict):
        return Extraction(document_id, reason="malformed-output", message="answer is not a JSON object",
                          payload=payload)
    fields = normalise_fields(raw)
    missing = [f for f in REQUIRED_FIELDS if f not in fields]
    if missing:
        return Extraction(document_id, reason="missing-field", message=f"no {', '.join(missing)} in the answer",
                          payload=payload)
    try:
        return Extraction(document_id, medical=Medical.model_validate(fields))
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) + f": {e['type']}" for e in exc.errors()[:5])
        return Extraction(document_id, reason="invalid-field", message=where, payload=payload)


# --------------------------------------------------------------------------- rules


_DATE = (r"(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4}|\d{1,2}\.\d{1,2}\.\d{4}|[A-Z][a-z]+ \d{1,2}, \d{4}"
         r"|\d{4}/\d{2}/\d{2})")
_LABEL_END = r"\s*[:#=]\s*"
_PATIENT_ID_LABELS = r"MRN|Patient ID|Patient No\.?|Medical Record(?: Number| No\.?)?|Chart(?: No\.?| Number)?"
_PROVIDER_LABELS = r"Provider|Physician|Attending(?: Physician)?|Referring Physician|Doctor|Dentist|Clinician"
_ICD10 = re.compile(r"\b([A-TV-Z][0-9][0-9AB](?:\.[0-9A-TV-Z]{1,4})?)\b")
_CPT = re.compile(r"\b(\d{4}[0-9F]|[A-V]\d{4}|D\d{4})\b")


def _labelled(text: str, labels: str) -> str | None:
    match = re.search(rf"(?im)^[ \t]*(?:{labels}){_LABEL_END}(.+?)[ \t]*$", text)
    return match.group(1).strip() if match else None


def _section(text: str, labels: str) -> str | None:
    """A labelled value, or the lines under a heading up to the next blank line / heading."""
    match = re.search(rf"(?ims)^[ \t]*(?:{labels})[ \t]*:[ \t]*(.*?)(?=\n[ \t]*\n|\n[ \t]*[A-Z][A-Za-z /]+:|\Z)", text)
    return match.group(1).strip() if match else None


def _hl7_fields(message: str) -> dict[str, Any]:
    """Patient fields of an HL7 v2 message's PID segment (PID-3 id, PID-5 name, PID-7 birth date)."""
    fields: dict[str, Any] = {}
    for segment in re.split(r"\r\n|\r|\n", message):
        parts = segment.split("|")
        if parts[0] == "PID":
            parts += [""] * (8 - len(parts))
            fields["patient_id"] = parts[3].split("^")[0] or None
            family, _, given = parts[5].partition("^")
            fields["patient_name"] = " ".join(p for p in (given.split("^")[0], family) if p) or None
            fields["date_of_birth"] = _parse_date_compact(parts[7])
        elif parts[0] == "MSH" and len(parts) > 6:
            fields["encounter_date"] = _parse_date_compact(parts[6])
    return {k: v for k, v in fields.items() if v}


def _parse_date_compact(value: str) -> date | None:
    try:
        return datetime.strptime(value[:8], "%Y%m%d").date() if len(value) >= 8 else None
    except ValueError:
        return None


class RulesExtractor:
    """Labelled fields ("MRN:", "DOB:", "Provider:"...) and ICD-10 / CPT patterns; no model."""

    name = "rules"
    model = "regex"
    prompt_version = "rules-v1"

    def extract(self, documents: list[DocumentText]) -> list[Extraction]:
        return [self.extract_one(d) for d in documents]

    def extract_one(self, document: DocumentText) -> Extraction:
        text = document.text
        if text.lstrip().startswith("MSH|"):
            return validate_output(document.document_id, _hl7_fields(text))
        raw: dict[str, Any] = {
            "patient_id": _labelled(text, _PATIENT_ID_LABELS),
            "patient_name": _labelled(text, r"Patient(?: Name)?|Name"),
            "provider": _labelled(text, _PROVIDER_LABELS),
        }
        for field, labels in (("date_of_birth", r"DOB|Date of Birth|Birth ?Date"),
                              ("encounter_date", r"Date of Service|DOS|Visit Date|Encounter Date|Exam Date|Date")):
            value = _labelled(text, labels)
            found = re.search(_DATE, value) if value else None
            raw[field] = parse_date(found.group(1)) if found else None
        diagnosis = _section(text, r"Diagnos[ie]s|Dx|ICD-?10(?: codes?)?|Assessment codes?")
        raw["diagnosis_codes"] = _ICD10.findall(diagnosis or "")
        procedures = _section(text, r"Procedures?|Px|CPT(?: codes?)?|Procedure codes?")
        raw["procedure_codes"] = _CPT.findall(procedures or "")
        medications = _section(text, r"Medications?|Meds|Prescriptions?|Rx")
        raw["medications"] = [m.strip(" -*•\t") for m in re.split(r"[\n;]", medications or "") if m.strip(" -*•\t")]
        summary = _section(text, r"Summary|Assessment|Impression|Plan")
        raw["summary"] = (summary or "")[:1000] or None
        return validate_output(document.document_id, {k: v for k, v in raw.items() if v not in (None, [], "")})


# --------------------------------------------------------------------------- LLM

_SYSTEM_PROMPT = (
    "You extract structured data from clinical documents. Answer with one JSON object only. "
    "For each document give: patient_id (MRN or chart number), patient_name, date_of_birth (YYYY-MM-DD), "
    "encounter_date (YYYY-MM-DD), provider, diagnosis_codes (ICD-10-CM list), procedure_codes (CPT/HCPCS/CDT list), "
    "medications (list), summary (at most three sentences). Use null for what the document does not say."
)


def _batch_prompt(documents: list[DocumentText]) -> str:
    body = "\n\n".join(f"<document id=\"{d.document_id}\">\n{d.text}\n</document>" for d in documents)
    return ('Return {"records": [{"document_id": "<id>", ...fields}]}, one record per document.\n\n' + body)


def _single_prompt(document: DocumentText) -> str:
    return "Return the fields of this document as one JSON object.\n\n" + document.text


def _json_object(text: str | None) -> Any:
    """Parse a model answer; tolerate a ```json fence around it."""
    if text is None:
        raise ValueError("empty answer")
    stripped = text.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", stripped, re.S)
    return json.loads(fence.group(1) if fence else stripped)


def _chunks(items: list[DocumentText], size: int) -> Iterator[list[DocumentText]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class LLMExtractor:
    """Structured extraction through an OpenAI-compatible ``/chat/completions`` endpoint."""

    name = "llm"
    prompt_version = PROMPT_VERSION

    def __init__(self, client: Any, model: str, *, batch_size: int = 8, retries: int = 3,
                 backoff_base: float = 2.0, max_document_chars: int = 20000) -> None:
        self.client = client  # openai.OpenAI(base_url=..., api_key=..., max_retries=0): retries are ours
        self.model = model
        self.batch_size = max(1, batch_size)
        self.retries = retries
        self.backoff_base = backoff_base
        self.max_document_chars = max_document_chars

    def extract(self, documents: list[DocumentText]) -> list[Extraction]:
        documents = [DocumentText(d.document_id, d.sha256, d.text[:self.max_document_chars]) for d in documents]
        results: dict[str, Extraction] = {}
        for chunk in _chunks(documents, self.batch_size):
            if len(chunk) > 1:
                results.update(self._batch(chunk))
            for document in chunk:
                if document.document_id not in results or not results[document.document_id].ok:
                    results[document.document_id] = self._single(document)
        return [results[d.document_id] for d in documents]

    def _complete(self, prompt: str, what: str) -> str | None:
        import openai

        def call() -> str | None:
            try:
                response = self.client.chat.completions.create(
                    model=self.model, temperature=0, response_format={"type": "json_object"},
                    messages=[{"role": "system", "content": _SYSTEM_PROMPT}, {"role": "user", "content": prompt}])
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                raise TransientError(f"{what}: {type(exc).__name__}") from exc
            except openai.APIStatusError as exc:
                if exc.status_code in (408, 409, 425, 429) or exc.status_code >= 500:
                    raise TransientError(f"{what}: HTTP {exc.status_code}") from exc
                raise PermanentError(f"{what}: HTTP {exc.status_code}") from exc
            return response.choices[0].message.content if response.choices else None

        return call_with_retry(call, what=what, retries=self.retries, base=self.backoff_base)

    def _failure(self, document_id: str, exc: Exception) -> Extraction:
        if is_transient(exc):
            return Extraction(document_id, reason="llm-unavailable", message=f"{exc} after {self.retries} retries")
        return Extraction(document_id, reason="llm-error", message=str(exc)[:300])

    def _batch(self, chunk: list[DocumentText]) -> dict[str, Extraction]:
        try:
            answer = self._complete(_batch_prompt(chunk), f"extract batch of {len(chunk)}")
            records = _json_object(answer).get("records")
        except (ValueError, AttributeError, TransientError, PermanentError):
            return {}  # every document of the chunk falls back to its own request
        if not isinstance(records, list):
            return {}
        wanted = {d.document_id for d in chunk}
        found: dict[str, Extraction] = {}
        for record in records:
            if isinstance(record, dict) and str(record.get("document_id")) in wanted:
                document_id = str(record.pop("document_id"))
                found[document_id] = validate_output(document_id, record)
        return found

    def _single(self, document: DocumentText) -> Extraction:
        try:
            answer = self._complete(_single_prompt(document), f"extract document {document.document_id}")
        except (TransientError, PermanentError) as exc:
            return self._failure(document.document_id, exc)
        try:
            raw = _json_object(answer)
        except ValueError as exc:
            return Extraction(document.document_id, reason="malformed-output",
                              message=f"answer is not JSON ({type(exc).__name__})", payload=(answer or "")[:4000])
        return validate_output(document.document_id, raw, payload=(answer or "")[:4000])
