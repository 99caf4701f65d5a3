"""The ingestion tables in PostgreSQL (schema ``ingest`` by default), as ``CREATE ... IF NOT EXISTS`` statements.

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

:func:`clinicflow.ingest.db.ensure_schema` runs them; :mod:`clinicflow.ingest.db` writes the rows.
"""

from __future__ import annotations

from clinicflow.core.sql import quote_ident


def ddl(schema: str) -> list[str]:
    """The statements creating ``schema`` and its tables and views (idempotent: ``IF NOT EXISTS``)."""
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
