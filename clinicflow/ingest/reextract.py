"""Re-extraction: the staged documents' stored text through an extractor again (``clinicflow ingest reextract``).

Pages through ``documents`` by id, one transaction per page; each document version's ``medical`` row is
replaced, failures become extract dead letters naming the extractor, and the document's previous row stays.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.core.sql import quote_ident
from clinicflow.ingest import db
from clinicflow.ingest.extractors import DocumentExtractor, DocumentText
from clinicflow.ingest.pipeline import extract_documents, extract_letters


@dataclass
class ReextractCounts:
    documents: int = 0
    extracted: int = 0
    from_cache: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)


def reextract(
    server: Any,
    schema: str,
    extractor: DocumentExtractor,
    run_id: str,
    *,
    since: Any = None,
    uri_like: str | None = None,
    batch_size: int = 100,
) -> ReextractCounts:
    """Extract staged documents again with ``extractor``; each document version's row is replaced.

    Idempotent: the same extractor twice writes the same rows (from the cache the second time). A failure
    is an extract dead letter naming the extractor; the document's previous row stays.
    """
    counts = ReextractCounts()
    s = quote_ident(schema, "postgres")
    after = "00000000-0000-0000-0000-000000000000"
    while True:
        with connected(server) as conn:
            with conn.cursor() as cur:
                clauses, params = ["id > %s::uuid", "COALESCE(extracted_text, text_content) IS NOT NULL"], [after]
                if since is not None:
                    clauses.append("staged_at >= %s")
                    params.append(since)
                if uri_like is not None:
                    clauses.append("uri LIKE %s")
                    params.append(uri_like)
                cur.execute(
                    f"SELECT id::text, uri, sha256, COALESCE(extracted_text, text_content) FROM {s}.documents "
                    f"WHERE {' AND '.join(clauses)} ORDER BY id LIMIT %s",
                    (*params, batch_size),
                )
                page = cur.fetchall()
                conn.commit()
                if not page:
                    return counts
                after = page[-1][0]
                counts.documents += len(page)
                texts = [DocumentText(row[0], row[2], row[3]) for row in page]
                rows, failed, cached = extract_documents(cur, schema, extractor, texts)
                counts.from_cache += cached
                counts.extracted += db.insert_medical(
                    cur,
                    schema,
                    rows,
                    extractor=extractor,
                    run_id=run_id,
                    replace=True,
                )
                letters = extract_letters(failed, {row[0]: row[1] for row in page}, extractor.name)
                db.record_dead_letters(cur, schema, letters, run_id)
                db.resolve_dead_letters(cur, schema, [doc_id for doc_id, _ in rows], ("extract",))
                for letter in letters:
                    counts.dead_lettered[f"extract/{letter.reason}"] += 1
            conn.commit()
