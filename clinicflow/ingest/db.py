"""The ingestion tables in PostgreSQL (schema ``ingest`` by default) and the SQL that writes them.

- ``documents``: one row per (uri, sha256) — a file's content version. The id
  is a UUID derived from (uri, sha256), so a rerun after a kill writes the
  same ids and ``ON CONFLICT DO NOTHING`` makes every insert idempotent.
- ``medical``: one row per document version (primary key ``document_id``; a re-extraction replaces it)
  with each field's provenance; view
  ``current_medical``: the row of each uri's latest content version.
- ``extraction_cache``: the validated result per (sha256, extractor,
  prompt_version, model): a rerun or a copy of a file never pays twice.
- ``dead_letters``: failures by stage, with reason code, attempts and status;
  at most one *open* letter per (stage, item_key), a repeat failure bumps
  ``attempts``.
- ``synthetic_records``: records of the ``synthetic`` source kind.
- ``runs``: one row per ingestion run (pattern, status, counts, message), read by ``clinicflow status``.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clinicflow.core.dbapi import PgConnection, PgCursor
from clinicflow.core.sql import quote_ident
from clinicflow.ingest.medical import Medical

DEFAULT_SCHEMA = "ingest"
_NAMESPACE = uuid.UUID("5b0f6a52-8d1e-4c1b-9a59-0c6b1f1e7a10")
STAGES = ("read", "stage", "extract", "load")


def document_id(uri: str, sha256: str) -> str:
    """The stable id of one content version of one object."""
    return str(uuid.uuid5(_NAMESPACE, f"{uri}\n{sha256}"))


def ddl(schema: str) -> list[str]:
    s = quote_ident(schema, "postgres")
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE TABLE IF NOT EXISTS {s}.documents (
            id uuid PRIMARY KEY,
            uri text NOT NULL,
            version text,
            sha256 text NOT NULL,
            size_bytes bigint NOT NULL,
            mime_sniffed text NOT NULL,
            mime_by_extension text,
            is_binary boolean NOT NULL,
            text_content text,
            content_base64 text,
            content_pointer text,
            source_kind text NOT NULL DEFAULT 'file',
            run_id text NOT NULL,
            staged_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT documents_uri_sha256 UNIQUE (uri, sha256),
            CONSTRAINT documents_one_content
                CHECK (num_nonnulls(text_content, content_base64, content_pointer) = 1))""",
        f"CREATE INDEX IF NOT EXISTS documents_uri_version ON {s}.documents (uri, version)",
        # The text the extractors read (PDF text layer, OCR, HTML/RTF/DOCX as text) when it differs from
        # text_content, how it was got (native / ocr / mixed), pages and the mean OCR word confidence.
        f"ALTER TABLE {s}.documents ADD COLUMN IF NOT EXISTS extracted_text text",
        f"ALTER TABLE {s}.documents ADD COLUMN IF NOT EXISTS text_method text",
        f"ALTER TABLE {s}.documents ADD COLUMN IF NOT EXISTS page_count integer",
        f"ALTER TABLE {s}.documents ADD COLUMN IF NOT EXISTS ocr_confidence real",
        f"ALTER TABLE {s}.documents ADD COLUMN IF NOT EXISTS text_error text",
        f"""CREATE TABLE IF NOT EXISTS {s}.medical (
            document_id uuid PRIMARY KEY REFERENCES {s}.documents (id),
            patient_id text,
            patient_name text,
            date_of_birth date,
            encounter_date date,
            provider text,
            diagnosis_codes text[] NOT NULL DEFAULT '{{}}',
            procedure_codes text[] NOT NULL DEFAULT '{{}}',
            medications text[] NOT NULL DEFAULT '{{}}',
            summary text,
            extractor text NOT NULL,
            model text NOT NULL,
            prompt_version text NOT NULL,
            run_id text NOT NULL,
            extracted_at timestamptz NOT NULL DEFAULT now())""",
        f"CREATE INDEX IF NOT EXISTS medical_patient ON {s}.medical (patient_id)",
        f"ALTER TABLE {s}.medical ADD COLUMN IF NOT EXISTS provenance jsonb NOT NULL DEFAULT '{{}}'",
        f"""CREATE TABLE IF NOT EXISTS {s}.extraction_cache (
            sha256 text NOT NULL,
            extractor text NOT NULL,
            prompt_version text NOT NULL,
            model text NOT NULL,
            result jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (sha256, extractor, prompt_version, model))""",
        f"""CREATE TABLE IF NOT EXISTS {s}.dead_letters (
            id bigserial PRIMARY KEY,
            run_id text NOT NULL,
            stage text NOT NULL CHECK (stage IN ('read', 'stage', 'extract', 'load')),
            source_kind text NOT NULL,
            item_key text NOT NULL,
            source_uri text,
            record_id text,
            reason text NOT NULL,
            message text NOT NULL,
            payload jsonb,
            pointer text,
            attempts integer NOT NULL DEFAULT 1,
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'replayed', 'discarded')),
            first_failed_at timestamptz NOT NULL DEFAULT now(),
            last_failed_at timestamptz NOT NULL DEFAULT now(),
            resolved_at timestamptz)""",
        f"CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_open_item ON {s}.dead_letters (stage, item_key) "
        f"WHERE status = 'open'",
        f"CREATE INDEX IF NOT EXISTS dead_letters_status ON {s}.dead_letters (status, stage)",
        # The extractor that produced an extract letter: a replay uses it again unless told otherwise.
        f"ALTER TABLE {s}.dead_letters ADD COLUMN IF NOT EXISTS extractor text",
        # The Medical row of each uri's latest content version (older versions stay in medical).
        f"""CREATE OR REPLACE VIEW {s}.current_medical AS
            SELECT d.uri, m.* FROM (SELECT DISTINCT ON (uri) id, uri FROM {s}.documents
                                    ORDER BY uri, staged_at DESC, id) d
            JOIN {s}.medical m ON m.document_id = d.id""",
        f"""CREATE TABLE IF NOT EXISTS {s}.synthetic_records (
            record_id text PRIMARY KEY,
            kind text NOT NULL,
            payload jsonb NOT NULL,
            run_id text NOT NULL,
            loaded_at timestamptz NOT NULL DEFAULT now())""",
        f"""CREATE TABLE IF NOT EXISTS {s}.runs (
            run_id text PRIMARY KEY,
            pattern text NOT NULL,
            mode text NOT NULL DEFAULT 'in-pod',
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed')),
            counts jsonb,
            message text)""",
    ]


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
    cur.execute(f"SELECT d.uri, d.version FROM {s}.documents d "
                f"JOIN unnest(%s::text[], %s::text[]) AS o(uri, version) ON d.uri = o.uri AND d.version = o.version",
                ([p[0] for p in pairs], [p[1] for p in pairs]))
    return {(row[0], row[1]) for row in cur.fetchall()}


def insert_documents(cur: PgCursor, schema: str, documents: list[StagedDocument], run_id: str) -> set[str]:
    """Insert documents; returns the ids actually inserted (the others were already staged)."""
    if not documents:
        return set()
    s = quote_ident(schema, "postgres")
    from psycopg2.extras import execute_values

    rows = [(d.id, d.uri, d.version, d.sha256, d.size_bytes, d.mime_sniffed, d.mime_by_extension, d.is_binary,
             d.text_content, d.content_base64, d.content_pointer, d.source_kind, run_id, d.extracted_text,
             d.text_method, d.page_count, d.ocr_confidence, d.text_error) for d in documents]
    inserted = execute_values(
        cur, f"INSERT INTO {s}.documents (id, uri, version, sha256, size_bytes, mime_sniffed, mime_by_extension, "
             f"is_binary, text_content, content_base64, content_pointer, source_kind, run_id, extracted_text, "
             f"text_method, page_count, ocr_confidence, text_error) VALUES %s "
             f"ON CONFLICT DO NOTHING RETURNING id::text", rows, fetch=True, page_size=len(rows))
    return {row[0] for row in inserted}


def insert_medical(cur: PgCursor, schema: str, rows: list[tuple[str, Medical]], *, extractor: str, model: str,
                   prompt_version: str, run_id: str, replace: bool = False) -> int:
    """Insert Medical rows (one per document version); returns how many were written.

    ``replace`` (a re-extraction): the document's row is replaced by this extractor's.
    """
    if not rows:
        return 0
    from psycopg2.extras import execute_values

    s = quote_ident(schema, "postgres")
    values = [(doc_id, m.patient_id, m.patient_name, m.date_of_birth, m.encounter_date, m.provider,
               m.diagnosis_codes, m.procedure_codes, m.medications, m.summary, json.dumps(m.provenance), extractor,
               model, prompt_version, run_id) for doc_id, m in rows]
    columns = ("patient_id", "patient_name", "date_of_birth", "encounter_date", "provider", "diagnosis_codes",
               "procedure_codes", "medications", "summary", "provenance", "extractor", "model", "prompt_version",
               "run_id")
    conflict = ("DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns) + ", extracted_at = now()"
                if replace else "DO NOTHING")
    inserted = execute_values(
        cur, f"INSERT INTO {s}.medical (document_id, {', '.join(columns)}) VALUES %s "
             f"ON CONFLICT (document_id) {conflict} RETURNING 1", values, fetch=True, page_size=len(values))
    return len(inserted)


def cached_extractions(cur: PgCursor, schema: str, sha256s: list[str], *, extractor: str, prompt_version: str,
                       model: str) -> dict[str, Medical]:
    if not sha256s:
        return {}
    s = quote_ident(schema, "postgres")
    cur.execute(f"SELECT sha256, result FROM {s}.extraction_cache WHERE sha256 = ANY(%s) AND extractor = %s "
                f"AND prompt_version = %s AND model = %s", (sha256s, extractor, prompt_version, model))
    return {sha: Medical.model_validate(result) for sha, result in cur.fetchall()}


def cache_extractions(cur: PgCursor, schema: str, results: dict[str, Medical], *, extractor: str, prompt_version: str,
                      model: str) -> None:
    if not results:
        return
    from psycopg2.extras import execute_values

    s = quote_ident(schema, "postgres")
    execute_values(cur, f"INSERT INTO {s}.extraction_cache (sha256, extractor, prompt_version, model, result) "
                        f"VALUES %s ON CONFLICT DO NOTHING",
                   [(sha, extractor, prompt_version, model, m.model_dump_json()) for sha, m in results.items()])


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
            (run_id, letter.stage, letter.source_kind, letter.item_key, letter.source_uri, letter.record_id,
             letter.reason, letter.message[:2000],
             None if letter.payload is None else json.dumps(letter.payload, default=str), letter.pointer,
             letter.extractor))


def resolve_dead_letters(cur: PgCursor, schema: str, item_keys: list[str], stages: tuple[str, ...] = STAGES) -> int:
    """Mark open letters of items that have now succeeded as ``replayed``."""
    if not item_keys:
        return 0
    s = quote_ident(schema, "postgres")
    cur.execute(f"UPDATE {s}.dead_letters SET status = 'replayed', resolved_at = now() "
                f"WHERE status = 'open' AND item_key = ANY(%s) AND stage = ANY(%s)", (item_keys, list(stages)))
    return int(cur.rowcount)


def start_ingest_run(conn: PgConnection, schema: str, run_id: str, pattern: str, mode: str = "in-pod") -> None:
    """The run's row, status running (a rerun under the same id starts it again)."""
    s = quote_ident(schema, "postgres")
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {s}.runs (run_id, pattern, mode) VALUES (%s, %s, %s) ON CONFLICT (run_id) DO "
                    "UPDATE SET started_at = now(), finished_at = NULL, status = 'running', message = NULL",
                    (run_id, pattern, mode))
    conn.commit()


def finish_ingest_run(conn: PgConnection, schema: str, run_id: str, *, failed: bool, counts: dict[str, Any] | None,
               message: str | None) -> None:
    s = quote_ident(schema, "postgres")
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {s}.runs SET finished_at = now(), status = %s, counts = %s, message = %s "
                    "WHERE run_id = %s",
                    ("failed" if failed else "ok", json.dumps(counts or {}, default=str), message, run_id))
    conn.commit()
