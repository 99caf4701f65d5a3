"""The dead-letter queue: list, show, discard and replay letters in ``<schema>.dead_letters``.

A replay runs the failed stage again with the current code and settings:

- ``read`` / ``stage`` (a file): the object is looked up by its uri and goes
  through the normal batch path (read, stage, extract);
- ``extract`` (a staged document): the document's stored text is extracted
  again (cache first) by the extractor that produced the letter (unless one
  is given) and its Medical row inserted;
- ``load`` (a synthetic record): the record kept in the letter's payload is
  loaded.

Every write is ``ON CONFLICT DO NOTHING`` on stable keys, so a replayed item
is never duplicated. A success marks the letter ``replayed``; a new failure
keeps it ``open`` with ``attempts + 1`` and the new reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.objectstore.stores import ObjectInfo, ObjectStore
from clinicflow.core.dbapi import PgConnection
from clinicflow.core.sql import quote_ident
from clinicflow.ingest import db
from clinicflow.ingest.extractors import DocumentExtractor, DocumentText
from clinicflow.ingest.pipeline import IngestSettings, extract_documents, extract_letters, process_file_batch
from clinicflow.ingest.synthetic import RejectedRecord, load_records, record_from_payload

LETTER_COLUMNS = (
    "id",
    "run_id",
    "stage",
    "source_kind",
    "item_key",
    "source_uri",
    "record_id",
    "reason",
    "message",
    "pointer",
    "attempts",
    "status",
    "first_failed_at",
    "last_failed_at",
    "resolved_at",
)

# uri -> (store, key): built by the caller (tasks/ingest.py) so this module needs no cloud credentials.
StoreForUri = Callable[[str], tuple[ObjectStore, str]]
# extractor kind ("rules", "llm", "none") -> extractor: built by the caller (tasks/ingest.py).
ExtractorFor = Callable[[str], DocumentExtractor | None]


def _where(
    status: str | None, stage: str | None, reason: str | None, run_id: str | None, ids: list[int] | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("status", status), ("stage", stage), ("reason", reason), ("run_id", run_id)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if ids:
        clauses.append("id = ANY(%s)")
        params.append(list(ids))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_letters(
    conn: PgConnection,
    schema: str = db.DEFAULT_SCHEMA,
    *,
    status: str | None = "open",
    stage: str | None = None,
    reason: str | None = None,
    run_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Letters, newest first, without payloads (they may hold document content)."""
    where, params = _where(status, stage, reason, run_id, None)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(LETTER_COLUMNS)} FROM {quote_ident(schema, 'postgres')}.dead_letters"
            f"{where} ORDER BY id DESC LIMIT %s",
            (*params, limit),
        )
        return [dict(zip(LETTER_COLUMNS, row, strict=True)) for row in cur.fetchall()]


def count_letters(conn: PgConnection, schema: str = db.DEFAULT_SCHEMA) -> dict[tuple[str, str, str], int]:
    """(status, stage, reason) -> count."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT status, stage, reason, count(*) FROM {quote_ident(schema, 'postgres')}.dead_letters "
            f"GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        return {(a, b, c): int(n) for a, b, c, n in cur.fetchall()}


def get_letter(conn: PgConnection, schema: str, letter_id: int) -> dict[str, Any] | None:
    """One letter with its payload."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(LETTER_COLUMNS)}, payload "
            f"FROM {quote_ident(schema, 'postgres')}.dead_letters WHERE id = %s",
            (letter_id,),
        )
        row = cur.fetchone()
    return None if row is None else dict(zip((*LETTER_COLUMNS, "payload"), row, strict=True))


def discard_letters(conn: PgConnection, schema: str, ids: list[int]) -> int:
    """Mark open letters ``discarded`` (kept for the record, never replayed)."""
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {quote_ident(schema, 'postgres')}.dead_letters SET status = 'discarded', "
            f"resolved_at = now() WHERE status = 'open' AND id = ANY(%s)",
            (list(ids),),
        )
        changed = int(cur.rowcount)
    conn.commit()
    return changed


FAILED_AGAIN_SHOWN = 5  # letters named in a replay's failure message; `dlq list` has them all


@dataclass
class ReplayResult:
    attempted: int = 0
    replayed: int = 0
    still_open: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)
    failed_again: list[str] = field(default_factory=list)  # the first letters still open: id, stage/reason, message


def _open_pages(
    server: Any,
    schema: str,
    ids: list[int] | None,
    stage: str | None,
    reason: str | None,
    run_id: str | None,
    page_size: int,
) -> Iterator[list[dict[str, Any]]]:
    """Open letters in id order, one page at a time (keyset: memory bounded by the page)."""
    after = 0
    while True:
        where, params = _where("open", stage, reason, run_id, ids)
        with connected(server) as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT id, stage, source_kind, item_key, source_uri, pointer, payload, extractor "
                f"FROM {quote_ident(schema, 'postgres')}.dead_letters{where} AND id > %s "
                f"ORDER BY id LIMIT %s",
                (*params, after, page_size),
            )
            names = ("id", "stage", "source_kind", "item_key", "source_uri", "pointer", "payload", "extractor")
            page = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        if not page:
            return
        yield page
        after = page[-1]["id"]


def replay(
    server: Any,
    settings: IngestSettings,
    *,
    ids: list[int] | None = None,
    stage: str | None = None,
    reason: str | None = None,
    run_id: str | None = None,
    store_for: StoreForUri | None = None,
    extractor: DocumentExtractor | None = None,
    extractor_for: ExtractorFor | None = None,
    page_size: int = 200,
) -> ReplayResult:
    """Replay open letters (all, or by ids / stage / reason / run); see the module docstring.

    ``extractor`` (given) re-extracts every letter; else each letter goes back to the extractor that
    produced it, built by ``extractor_for(kind)`` (``rules`` for letters that name none).
    """
    result = ReplayResult()
    replay_settings = IngestSettings(**{**settings.__dict__, "max_error_rate": 1.0})  # a replay is never cut short
    letter_ids: list[int] = []
    for page in _open_pages(server, settings.schema, ids, stage, reason, run_id, page_size):
        letter_ids.extend(letter["id"] for letter in page)
        result.attempted += len(page)
        synthetic = [letter for letter in page if letter["source_kind"] == "synthetic"]
        if synthetic:
            _replay_synthetic(server, synthetic, replay_settings)
        for letter in page:
            result.by_stage[letter["stage"]] = result.by_stage.get(letter["stage"], 0) + 1
            if letter["source_kind"] == "synthetic":
                continue
            chosen = extractor
            if chosen is None and extractor_for is not None:
                chosen = extractor_for(letter.get("extractor") or "rules")
            if letter["stage"] == "extract":
                _replay_extract(server, letter, replay_settings, chosen)
            else:
                _replay_file(server, letter, replay_settings, store_for, chosen)
    if letter_ids:
        with connected(server) as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT status, count(*) FROM {quote_ident(settings.schema, 'postgres')}.dead_letters "
                f"WHERE id = ANY(%s) GROUP BY status",
                (letter_ids,),
            )
            statuses = dict(cur.fetchall())
            cur.execute(
                f"SELECT id, stage, reason, message FROM {quote_ident(settings.schema, 'postgres')}.dead_letters "
                f"WHERE id = ANY(%s) AND status = 'open' ORDER BY id LIMIT %s",
                (letter_ids, FAILED_AGAIN_SHOWN),
            )
            result.failed_again = [f"letter {i}: {st}/{r}: {(m or '')[:200]}" for i, st, r, m in cur.fetchall()]
        result.replayed = int(statuses.get("replayed", 0))
        result.still_open = int(statuses.get("open", 0))
    return result


def _bump(server: Any, settings: IngestSettings, letter: dict[str, Any], reason: str, message: str) -> None:
    with connected(server) as conn:
        with conn.cursor() as cur:
            db.record_dead_letters(
                cur,
                settings.schema,
                [
                    db.DeadLetterRow(
                        stage=letter["stage"],
                        source_kind=letter["source_kind"],
                        item_key=letter["item_key"],
                        reason=reason,
                        message=message,
                        source_uri=letter["source_uri"],
                        pointer=letter["pointer"],
                    )
                ],
                settings.run_id,
            )
        conn.commit()


def _replay_synthetic(server: Any, letters: list[dict[str, Any]], settings: IngestSettings) -> None:
    records = []
    for letter in letters:
        try:
            records.append(record_from_payload(letter["payload"] or {}))
        except RejectedRecord as exc:
            _bump(server, settings, letter, exc.reason, str(exc))
    if records:
        load_records(server, records, settings)


def _replay_file(
    server: Any,
    letter: dict[str, Any],
    settings: IngestSettings,
    store_for: StoreForUri | None,
    extractor: DocumentExtractor | None,
) -> None:
    uri = letter["source_uri"] or letter["item_key"]
    if store_for is None:
        raise ValueError("replaying file letters needs a store_for(uri) function")
    store, key = store_for(uri)
    found: ObjectInfo | None = next((o for o in store.list(key) if o.key == key), None)
    if found is None:
        _bump(server, settings, letter, "not-found", f"{uri}: no longer in the store")
        return
    process_file_batch(server, store, [found], settings, extractor)


def _replay_extract(
    server: Any, letter: dict[str, Any], settings: IngestSettings, extractor: DocumentExtractor | None
) -> None:
    if extractor is None:
        raise ValueError("replaying extract letters needs an extractor")
    s = quote_ident(settings.schema, "postgres")
    with connected(server) as conn:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT id::text, uri, sha256, COALESCE(extracted_text, text_content) FROM {s}.documents "
                f"WHERE id = %s::uuid",
                (letter["pointer"] or letter["item_key"],),
            )
            row = cur.fetchone()
            if row is None or row[3] is None:
                conn.rollback()
                _bump(server, settings, letter, "document-missing", f"document {letter['item_key']} has no text")
                return
            rows, failed, _ = extract_documents(cur, settings.schema, extractor, [DocumentText(row[0], row[2], row[3])])
            conn.commit()
            db.insert_medical(
                cur,
                settings.schema,
                rows,
                extractor=extractor,
                run_id=settings.run_id,
            )
            db.record_dead_letters(
                cur, settings.schema, extract_letters(failed, {row[0]: row[1]}, extractor.name), settings.run_id
            )
            db.resolve_dead_letters(cur, settings.schema, [doc_id for doc_id, _ in rows], ("extract",))
        conn.commit()
