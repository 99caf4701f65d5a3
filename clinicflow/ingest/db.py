"""The SQL that writes the ingestion tables in PostgreSQL (schema ``ingest`` by default).

The tables and their statements: :mod:`clinicflow.ingest.schema`. Every insert is idempotent: a document's
id is a UUID derived from (uri, sha256), so a rerun after a kill writes the same ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clinicflow.core.dbapi import PgConnection, PgCursor
from clinicflow.core.sql import quote_ident
from clinicflow.ingest.medical import Medical
from clinicflow.ingest.schema import ddl

if TYPE_CHECKING:
    from clinicflow.ingest.extractors import DocumentExtractor

DEFAULT_SCHEMA = "ingest"
_NAMESPACE = uuid.UUID("5b0f6a52-8d1e-4c1b-9a59-0c6b1f1e7a10")
STAGES = ("read", "stage", "extract", "load")


def document_id(uri: str, sha256: str) -> str:
    """The stable id of one content version of one object."""
    return str(uuid.uuid5(_NAMESPACE, f"{uri}\n{sha256}"))


def ensure_schema(conn: PgConnection, schema: str = DEFAULT_SCHEMA) -> None:
    """Create the tables if missing (serialised by an advisory lock: parallel runs may race)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"clinicflow-ingest-ddl:{schema}",))
        for statement in ddl(schema):
            cur.execute(statement)
    conn.commit()


@dataclass
class StagedDocument:
    """A document row about to be inserted (content never logged)."""

    id: str
    uri: str
    version: str | None
    sha256: str
    size_bytes: int
    mime_sniffed: str
    mime_by_extension: str | None
    is_binary: bool
    text_content: str | None
    content_base64: str | None
    content_pointer: str | None
    source_kind: str = "file"
    extracted_text: str | None = None  # only when it differs from text_content
    text_method: str | None = None
    page_count: int | None = None
    ocr_confidence: float | None = None
    text_error: str | None = None

    @property
    def text(self) -> str | None:
        """The text the extractors read."""
        return self.extracted_text if self.extracted_text is not None else self.text_content


@dataclass(frozen=True)
class DeadLetterRow:
    stage: str
    source_kind: str
    item_key: str
    reason: str
    message: str
    source_uri: str | None = None
    record_id: str | None = None
    payload: Any = None
    pointer: str | None = None
    extractor: str | None = None


def known_versions(cur: PgCursor, schema: str, objects: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (uri, version) pairs are already staged: those objects are skipped without a read."""
    pairs = list(objects)
    if not pairs:
        return set()
    s = quote_ident(schema, "postgres")
    cur.execute(
        f"SELECT d.uri, d.version FROM {s}.documents d "
        f"JOIN unnest(%s::text[], %s::text[]) AS o(uri, version) ON d.uri = o.uri AND d.version = o.version",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    )
    return {(row[0], row[1]) for row in cur.fetchall()}


def insert_documents(cur: PgCursor, schema: str, documents: list[StagedDocument], run_id: str) -> set[str]:
    """Insert documents; returns the ids actually inserted (the others were already staged)."""
    if not documents:
        return set()
    s = quote_ident(schema, "postgres")
    from psycopg2.extras import execute_values

    rows = [
        (
            d.id,
            d.uri,
            d.version,
            d.sha256,
            d.size_bytes,
            d.mime_sniffed,
            d.mime_by_extension,
            d.is_binary,
            d.text_content,
            d.content_base64,
            d.content_pointer,
            d.source_kind,
            run_id,
            d.extracted_text,
            d.text_method,
            d.page_count,
            d.ocr_confidence,
            d.text_error,
        )
        for d in documents
    ]
    inserted = execute_values(
        cur,
        f"INSERT INTO {s}.documents (id, uri, version, sha256, size_bytes, mime_sniffed, mime_by_extension, "
        f"is_binary, text_content, content_base64, content_pointer, source_kind, run_id, extracted_text, "
        f"text_method, page_count, ocr_confidence, text_error) VALUES %s "
        f"ON CONFLICT DO NOTHING RETURNING id::text",
        rows,
        fetch=True,
        page_size=len(rows),
    )
    return {row[0] for row in inserted}


def insert_medical(
    cur: PgCursor,
    schema: str,
    rows: list[tuple[str, Medical]],
    *,
    extractor: DocumentExtractor,
    run_id: str,
    replace: bool = False,
) -> int:
    """Insert Medical rows (one per document version) stamped with the extractor's name, model and prompt
    version; returns how many were written.

    ``replace`` (a re-extraction): the document's row is replaced by this extractor's.
    """
    if not rows:
        return 0
    from psycopg2.extras import execute_values

    s = quote_ident(schema, "postgres")
    values = [
        (
            doc_id,
            m.patient_id,
            m.patient_name,
            m.date_of_birth,
            m.encounter_date,
            m.provider,
            m.diagnosis_codes,
            m.procedure_codes,
            m.medications,
            m.summary,
            json.dumps(m.provenance),
            extractor.name,
            extractor.model,
            extractor.prompt_version,
            run_id,
        )
        for doc_id, m in rows
    ]
    columns = (
        "patient_id",
        "patient_name",
        "date_of_birth",
        "encounter_date",
        "provider",
        "diagnosis_codes",
        "procedure_codes",
        "medications",
        "summary",
        "provenance",
        "extractor",
        "model",
        "prompt_version",
        "run_id",
    )
    conflict = (
        "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns) + ", extracted_at = now()"
        if replace
        else "DO NOTHING"
    )
    inserted = execute_values(
        cur,
        f"INSERT INTO {s}.medical (document_id, {', '.join(columns)}) VALUES %s "
        f"ON CONFLICT (document_id) {conflict} RETURNING 1",
        values,
        fetch=True,
        page_size=len(values),
    )
    return len(inserted)


def cached_extractions(
    cur: PgCursor, schema: str, sha256s: list[str], *, extractor: str, prompt_version: str, model: str
) -> dict[str, Medical]:
    if not sha256s:
        return {}
    s = quote_ident(schema, "postgres")
    cur.execute(
        f"SELECT sha256, result FROM {s}.extraction_cache WHERE sha256 = ANY(%s) AND extractor = %s "
        f"AND prompt_version = %s AND model = %s",
        (sha256s, extractor, prompt_version, model),
    )
    return {sha: Medical.model_validate(result) for sha, result in cur.fetchall()}


def cache_extractions(
    cur: PgCursor, schema: str, results: dict[str, Medical], *, extractor: str, prompt_version: str, model: str
) -> None:
    if not results:
        return
    from psycopg2.extras import execute_values

    s = quote_ident(schema, "postgres")
    execute_values(
        cur,
        f"INSERT INTO {s}.extraction_cache (sha256, extractor, prompt_version, model, result) "
        f"VALUES %s ON CONFLICT DO NOTHING",
        [(sha, extractor, prompt_version, model, m.model_dump_json()) for sha, m in results.items()],
    )


def record_dead_letters(cur: PgCursor, schema: str, letters: list[DeadLetterRow], run_id: str) -> None:
    """Insert dead letters; an item already open at the same stage gets ``attempts + 1`` and the new reason."""
    s = quote_ident(schema, "postgres")
    for letter in letters:
        cur.execute(
            f"INSERT INTO {s}.dead_letters AS d (run_id, stage, source_kind, item_key, source_uri, record_id, reason, "
            f"message, payload, pointer, extractor) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            f"ON CONFLICT (stage, item_key) WHERE status = 'open' DO UPDATE SET attempts = d.attempts + 1, "
            f"run_id = EXCLUDED.run_id, reason = EXCLUDED.reason, message = EXCLUDED.message, "
            f"payload = COALESCE(EXCLUDED.payload, d.payload), extractor = COALESCE(EXCLUDED.extractor, d.extractor), "
            f"last_failed_at = now()",
            (
                run_id,
                letter.stage,
                letter.source_kind,
                letter.item_key,
                letter.source_uri,
                letter.record_id,
                letter.reason,
                letter.message[:2000],
                None if letter.payload is None else json.dumps(letter.payload, default=str),
                letter.pointer,
                letter.extractor,
            ),
        )


def resolve_dead_letters(cur: PgCursor, schema: str, item_keys: list[str], stages: tuple[str, ...] = STAGES) -> int:
    """Mark open letters of items that have now succeeded as ``replayed``."""
    if not item_keys:
        return 0
    s = quote_ident(schema, "postgres")
    cur.execute(
        f"UPDATE {s}.dead_letters SET status = 'replayed', resolved_at = now() "
        f"WHERE status = 'open' AND item_key = ANY(%s) AND stage = ANY(%s)",
        (item_keys, list(stages)),
    )
    return int(cur.rowcount)


def start_ingest_run(conn: PgConnection, schema: str, run_id: str, pattern: str, mode: str = "in-pod") -> None:
    """The run's row, status running (a rerun under the same id starts it again)."""
    s = quote_ident(schema, "postgres")
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {s}.runs (run_id, pattern, mode) VALUES (%s, %s, %s) ON CONFLICT (run_id) DO "
            "UPDATE SET started_at = now(), finished_at = NULL, status = 'running', message = NULL",
            (run_id, pattern, mode),
        )
    conn.commit()


def finish_ingest_run(
    conn: PgConnection, schema: str, run_id: str, *, failed: bool, counts: dict[str, Any] | None, message: str | None
) -> None:
    s = quote_ident(schema, "postgres")
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {s}.runs SET finished_at = now(), status = %s, counts = %s, message = %s WHERE run_id = %s",
            ("failed" if failed else "ok", json.dumps(counts or {}, default=str), message, run_id),
        )
    conn.commit()
