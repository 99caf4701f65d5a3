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
from typing import Any, Protocol

from pydantic import ValidationError

from clinicflow.connectors.http import redact
from clinicflow.core.retry import (
    DEFAULT_POLICY,
    PermanentError,
    RetryPolicy,
    TransientError,
    call_with_retry,
    is_transient,
)
from clinicflow.ingest.clinical import read_text
from clinicflow.ingest.coding import StructureError
from clinicflow.ingest.context import sections
from clinicflow.ingest.fields import SSN, Ambiguous, Candidates, numeric_date_order
from clinicflow.ingest.medical import REQUIRED_FIELDS, Medical, normalise_fields
from clinicflow.ingest.structured import detect, read_structured

PROMPT_VERSION = "medical-v2"  # part of the cache key: a new prompt never reuses old answers
RULES_VERSION = "rules-v6"  # part of the cache key too: changed rules read every document again


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


def validate_output(document_id: str, raw: Any, payload: str | None = None, text: str | None = None) -> Extraction:
    """A raw field dict (any field names) → a validated Medical, or the reason it is not one.

    With ``text`` (a model's answer), the patient id must occur in the document and not be an SSN:
    a model never invents an identifier.
    """
    if not isinstance(raw, dict):
        return Extraction(
            document_id, reason="malformed-output", message="answer is not a JSON object", payload=payload
        )
    fields = normalise_fields(raw)
    missing = [f for f in REQUIRED_FIELDS if f not in fields]
    if missing:
        return Extraction(
            document_id,
            reason="missing-field",
            message=f"no {', '.join(missing)} found (a labelled MRN, chart or patient number; never an SSN)",
            payload=payload,
        )
    if text is not None:
        value = str(fields["patient_id"]).strip()
        if SSN.match(value) or value.upper() not in text.upper():
            return Extraction(
                document_id,
                reason="invalid-field",
                message="patient_id: not a labelled identifier of the document",
                payload=payload,
            )
    # A model's numeric dates are read in the order the document writes them (the US order without the text).
    context = {"date_order": numeric_date_order(text) if text is not None else "mdy"}
    try:
        return Extraction(document_id, medical=Medical.model_validate(fields, context=context))
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) + f": {e['type']}" for e in exc.errors()[:5])
        return Extraction(document_id, reason="invalid-field", message=where, payload=payload)


# --------------------------------------------------------------------------- rules

_NON_CLINICAL = re.compile(
    r"(?i)\b(?:invoice|amount due|balance due|remit to|purchase order|agenda|minutes of|"
    r"attendees|action items|meeting notes?|unsubscribe)\b"
)


def not_clinical_reason(text: str) -> str | None:
    """Why ``text`` is not a clinical document (empty, or no identifier / birth date / clinical content), else None."""
    if not text.strip():
        return "empty document"
    if detect(text) is not None:
        return None
    probe = Candidates()
    signals = read_text(text, probe)
    primary = any(c.rank == 0 for c in probe.found.get("patient_id", []))
    clinical = signals["sections"] + signals["codes"]
    if primary or signals["dob"]:
        return None
    if _NON_CLINICAL.search(text):
        return "no patient identifier or birth date, and business-document wording (invoice, agenda, minutes)"
    if clinical == 0:
        return "no patient identifier, birth date, clinical section or diagnosis/procedure code"
    return None


def _summary(text: str) -> str | None:
    for section in sections(text):
        if re.search(r"(?i)summary|assessment|impression|conclusion|hospital course", section.heading):
            body = " ".join(text[section.start : section.end].split())
            if body:
                return body[:1000]
    return None


class RulesExtractor:
    """Offline: structured formats read as structures, free text by labels, sections, ConText and code sets."""

    name = "rules"
    model = "rules"
    prompt_version = RULES_VERSION

    def extract(self, documents: list[DocumentText]) -> list[Extraction]:
        return [self.extract_one(d) for d in documents]

    def extract_one(self, document: DocumentText) -> Extraction:
        text = document.text
        reason = not_clinical_reason(text)
        if reason is not None:
            return Extraction(document.document_id, reason="not-clinical", message=reason)
        out = Candidates()
        kind = detect(text)
        try:
            if kind is not None:
                read_structured(kind, text, out)
            else:
                read_text(text, out)
            fields, provenance = out.resolve()
        except StructureError as exc:
            return Extraction(document.document_id, reason="invalid-structure", message=str(exc))
        except Ambiguous as exc:
            return Extraction(document.document_id, reason="ambiguous-field", message=str(exc))
        if kind is None:
            summary = _summary(text)
            if summary:
                fields["summary"], provenance["summary"] = summary, "text:summary section"
        fields["provenance"] = {f"{k}": f"rules:{v}" for k, v in provenance.items()}
        return validate_output(document.document_id, fields)


# --------------------------------------------------------------------------- LLM

_SYSTEM_PROMPT = (
    "You extract structured data from clinical documents. Answer with one JSON object only. "
    "For each document give: patient_id (MRN or chart number), patient_name, date_of_birth (YYYY-MM-DD), "
    "encounter_date (YYYY-MM-DD), provider, diagnosis_codes (ICD-10-CM list), procedure_codes (CPT/HCPCS/CDT list), "
    "medications (list with dose), summary (at most three sentences). Use null for what the document does not say. "
    "Copy patient_id exactly as labelled (MRN, medical record number, chart number); never a social security number; "
    "null if two patients or two different identifiers appear. Diagnoses only when the patient has them: not negated, "
    "family history, past history or rule-out. If the document is not a clinical document about a patient, answer "
    '{"not_clinical": "<why>"}.'
)


def _batch_prompt(documents: list[DocumentText]) -> str:
    body = "\n\n".join(f'<document id="{d.document_id}">\n{d.text}\n</document>' for d in documents)
    return 'Return {"records": [{"document_id": "<id>", ...fields}]}, one record per document.\n\n' + body


def _single_prompt(document: DocumentText) -> str:
    return "Return the fields of this document as one JSON object.\n\n" + document.text


def _json_object(text: str | None) -> Any:
    """Parse a model answer: the JSON itself, fenced (```json), after a reasoning model's ``<think>`` block, or
    the one JSON object in a sentence ("Here is the record: {...}") from a server without JSON mode."""
    if text is None:
        raise ValueError("empty answer")
    stripped = re.sub(r"^\s*<think>.*?</think>", "", text, flags=re.S).strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", stripped, re.S)
    body = fence.group(1) if fence else stripped
    try:
        return json.loads(body)
    except ValueError:
        start = body.find("{")
        if start < 0:
            raise
        found, end = json.JSONDecoder().raw_decode(body, start)
        if "{" in body[end:]:
            raise ValueError("more than one JSON object in the answer") from None
        return found


def _chunks(items: list[DocumentText], size: int) -> Iterator[list[DocumentText]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LLMExtractor:
    """Structured extraction through an OpenAI-compatible ``/chat/completions`` endpoint."""

    name = "llm"
    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        batch_size: int = 8,
        retry: RetryPolicy = DEFAULT_POLICY,
        max_document_chars: int = 20000,
    ) -> None:
        self.client = client  # openai.OpenAI(base_url=..., api_key=..., max_retries=0): retries are ours
        self.model = model
        self.batch_size = max(1, batch_size)
        self.retry = retry
        self.max_document_chars = max_document_chars
        self._texts: dict[str, str] = {}
        # JSON mode (`response_format`) until the server refuses it: LM Studio and some proxies answer 400 to
        # {"type": "json_object"}; the prompt asks for JSON either way and answers are parsed leniently.
        self.json_mode = True
        base_url = getattr(client, "base_url", None)
        self.endpoint = redact(str(base_url)).rstrip("/") if base_url is not None else "the LLM endpoint"

    def extract(self, documents: list[DocumentText]) -> list[Extraction]:
        results: dict[str, Extraction] = {}
        self._texts = {d.document_id: d.text for d in documents}
        asked: list[DocumentText] = []
        for d in documents:
            reason = not_clinical_reason(d.text)
            if reason is not None:  # decoys never reach the model
                results[d.document_id] = Extraction(d.document_id, reason="not-clinical", message=reason)
            else:
                asked.append(DocumentText(d.document_id, d.sha256, d.text[: self.max_document_chars]))
        for chunk in _chunks(asked, self.batch_size):
            if len(chunk) > 1:
                results.update(self._batch(chunk))
            for document in chunk:
                if document.document_id not in results or not results[document.document_id].ok:
                    results[document.document_id] = self._single(document)
        return [results[d.document_id] for d in documents]

    def _validated(self, document_id: str, raw: Any, payload: str | None = None) -> Extraction:
        """The same validation as the rules extractor's, plus: the id must be one of the document's."""
        if isinstance(raw, dict) and raw.get("not_clinical"):
            return Extraction(document_id, reason="not-clinical", message=str(raw["not_clinical"])[:300])
        out = validate_output(document_id, raw, payload=payload, text=self._texts.get(document_id, ""))
        if out.medical is not None:
            filled = out.medical.model_dump(exclude_defaults=True, exclude={"provenance"})
            out.medical.provenance = dict.fromkeys(filled, f"llm:{self.model}:{self.prompt_version}")
        return out

    def _complete(self, prompt: str, what: str) -> str | None:
        import openai

        def call() -> str | None:
            json_mode = self.json_mode
            try:
                response = self.client.chat.completions.create(
                    model=self.model,
                    temperature=0,
                    messages=[{"role": "system", "content": _SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
                    **({"response_format": {"type": "json_object"}} if json_mode else {}),
                )
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                raise TransientError(f"{what}: {type(exc).__name__} ({self.endpoint})") from exc
            except openai.APIStatusError as exc:
                if exc.status_code in (408, 409, 425, 429) or exc.status_code >= 500:
                    raise TransientError(f"{what}: HTTP {exc.status_code} from {self.endpoint}") from exc
                if json_mode and exc.status_code in (400, 422) and "response_format" in str(exc):
                    self.json_mode = False  # this server has no JSON mode: ask again, and from now on, without
                    return call()
                raise PermanentError(f"{what}: HTTP {exc.status_code} from {self.endpoint}") from exc
            return response.choices[0].message.content if response.choices else None

        return call_with_retry(call, what=what, policy=self.retry)

    def _failure(self, document_id: str, exc: Exception) -> Extraction:
        if is_transient(exc):
            return Extraction(
                document_id, reason="llm-unavailable", message=f"{exc} after {self.retry.retries} retries"
            )
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
                found[document_id] = self._validated(document_id, record)
        return found

    def _single(self, document: DocumentText) -> Extraction:
        try:
            answer = self._complete(_single_prompt(document), f"extract document {document.document_id}")
        except (TransientError, PermanentError) as exc:
            return self._failure(document.document_id, exc)
        try:
            raw = _json_object(answer)
        except ValueError as exc:
            return Extraction(
                document.document_id,
                reason="malformed-output",
                message=f"answer is not JSON ({type(exc).__name__})",
                payload=(answer or "")[:4000],
            )
        return self._validated(document.document_id, raw, payload=(answer or "")[:4000])
