"""One ingestion batch, start to finish: read → stage → extract → commit, with dead letters.

A batch is committed in one transaction (documents, their Medical rows and
the batch's dead letters), so a kill leaves each batch either fully staged
or not at all, and a rerun redoes only what is missing (stable ids, ``ON
CONFLICT DO NOTHING``). Memory is bounded by one batch: ``batch_size``
objects of at most ``max_file_bytes`` each.

Counted per run: files listed (matching the pattern), new, skipped
(unchanged: same version, or same content), staged, extracted (Medical rows
written, from the extractor or the cache), dead-lettered by reason.

``max_error_rate`` decides only the run's final state (and the CLI's exit
code): every readable document is staged whatever extraction does, and every
dead letter points at a staged document (or, for a read failure, at the
listed uri), so it can be replayed.

Each document's text is got at staging (:mod:`clinicflow.ingest.text`: text
layer, OCR, HTML/RTF/DOCX) and stored with it; extraction and re-extraction
read that stored text.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from clinicflow.connectors.connections import transaction
from clinicflow.connectors.objectstore.stores import PROBLEMS, ObjectInfo, ObjectStore, OutsideRoot, TooLarge
from clinicflow.core.dbapi import PgCursor
from clinicflow.core.sql import quote_ident
from clinicflow.ingest import db
from clinicflow.ingest.extractors import DocumentExtractor, DocumentText, Extraction
from clinicflow.ingest.faults import DLQ_MARK, injected_fault
from clinicflow.ingest.medical import Medical
from clinicflow.ingest.sniff import decode_text, mime_by_extension, sniff_mime
from clinicflow.ingest.text import IMAGE_MIMES, MESSAGE_MIME, document_text

# Formats whose text comes from a parser or OCR: no text is a failure (an extract letter), not a binary to skip.
# Text formats whose text is not the file's own characters (markup, MIME parts).
DECODED_MIMES = ("text/html", "application/rtf", MESSAGE_MIME)
TEXT_BEARING = ("application/pdf", "application/zip", *DECODED_MIMES, *IMAGE_MIMES)

MIB = 1024 * 1024


@dataclass(frozen=True)
class IngestSettings:
    run_id: str
    schema: str = db.DEFAULT_SCHEMA
    max_file_bytes: int = 50 * MIB
    inline_binary_bytes: int = 1 * MIB  # binary content up to this is kept as base64, above it a pointer
    fail_percentage: float = 0.0
    seed: int = 0
    max_error_rate: float = 1.0
    read_concurrency: int = 8  # objects of a batch read at once (network-bound)


# Dead letters that are verdicts on a document, not failures: kept (and replayable) but not in the error rate.
SET_ASIDE = frozenset({"extract/not-clinical"})


@dataclass
class RunCounts:
    listed: int = 0
    new: int = 0
    skipped: int = 0
    staged: int = 0
    extracted: int = 0
    from_cache: int = 0
    not_extractable: int = 0  # binary documents: staged, no text to extract from
    dead_lettered: Counter[str] = field(default_factory=Counter)  # "stage/reason" -> count
    stopped: bool = False  # max_error_rate exceeded: the run stopped there

    @property
    def failures(self) -> int:
        """Dead letters that count against ``max_error_rate``: a document found not clinical (an invoice, a fax
        cover) is set aside for review, a verdict on the document rather than a failure of the run."""
        return sum(n for key, n in self.dead_lettered.items() if key not in SET_ASIDE)

    @property
    def set_aside(self) -> int:
        return sum(n for key, n in self.dead_lettered.items() if key in SET_ASIDE)

    @property
    def error_rate(self) -> float:
        return self.failures / self.new if self.new else 0.0

    def crosses(self, batch: RunCounts, max_error_rate: float) -> bool:
        """Would adding ``batch`` to this run put its error rate above ``max_error_rate``?"""
        new = self.new + batch.new
        return bool(new) and (self.failures + batch.failures) / new > max_error_rate

    def above(self, max_error_rate: float) -> bool:
        """Is the run's error rate above ``max_error_rate`` (the run ends Failed)?"""
        return self.error_rate > max_error_rate

    def add(self, other: RunCounts) -> None:
        for name in ("listed", "new", "skipped", "staged", "extracted", "from_cache", "not_extractable"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead_lettered.update(other.dead_lettered)
        self.stopped = self.stopped or other.stopped

    def as_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "new": self.new,
            "skipped": self.skipped,
            "staged": self.staged,
            "extracted": self.extracted,
            "from_cache": self.from_cache,
            "not_extractable": self.not_extractable,
            "dead_lettered": self.failures + self.set_aside,
            "set_aside_not_clinical": self.set_aside,
            "dead_lettered_by_reason": dict(sorted(self.dead_lettered.items())),
            "error_rate": round(self.error_rate, 4),
            "stopped_at_max_error_rate": self.stopped,
        }


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items from a stream (only one batch in memory)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def build_document(info: ObjectInfo, data: bytes, settings: IngestSettings) -> db.StagedDocument:
    sha256 = hashlib.sha256(data).hexdigest()
    text = decode_text(data)
    mime = sniff_mime(data, text)
    binary = text is None
    inline = binary and len(data) <= settings.inline_binary_bytes
    extracted = document_text(data, mime) if binary or mime in DECODED_MIMES else None
    return db.StagedDocument(
        id=db.document_id(info.uri, sha256),
        uri=info.uri,
        version=info.version,
        sha256=sha256,
        size_bytes=len(data),
        mime_sniffed=mime,
        mime_by_extension=mime_by_extension(info.key),
        is_binary=binary,
        text_content=None if binary else text.replace("\x00", ""),  # type: ignore[union-attr]
        content_base64=base64.b64encode(data).decode("ascii") if inline else None,
        content_pointer=info.uri if binary and not inline else None,
        extracted_text=extracted.text.replace("\x00", "") if extracted and extracted.text is not None else None,
        text_method=extracted.method if extracted else ("native" if text is not None else None),
        page_count=extracted.pages if extracted and extracted.text is not None else (1 if text is not None else None),
        ocr_confidence=extracted.ocr_confidence if extracted else None,
        text_error=extracted.error if extracted else None,
    )


def _file_letter(stage: str, info: ObjectInfo, reason: str, message: str) -> db.DeadLetterRow:
    return db.DeadLetterRow(
        stage=stage,
        source_kind="file",
        item_key=info.uri,
        source_uri=info.uri,
        reason=reason,
        message=message,
        pointer=info.uri,
    )


def _read(store: ObjectStore, info: ObjectInfo, max_bytes: int) -> bytes | Exception:
    try:
        return store.read(info.key, max_bytes)
    except Exception as exc:  # noqa: BLE001 - one unreadable object never stops the batch
        return exc


def read_objects(
    store: ObjectStore,
    objects: list[ObjectInfo],
    settings: IngestSettings,
    counts: RunCounts,
    letters: list[db.DeadLetterRow],
) -> list[db.StagedDocument]:
    """Read (``read_concurrency`` at a time) and describe each object; failures become read/stage dead letters."""
    for info in objects:
        if info.problem is not None:  # found wrong at listing: a dangling link, a link out of the root, gone
            letters.append(_file_letter("read", info, info.problem, f"{info.uri}: {PROBLEMS.get(info.problem, '')}"))
    objects = [o for o in objects if o.problem is None]
    wanted = [o for o in objects if o.size <= settings.max_file_bytes]
    for info in objects:
        if info.size > settings.max_file_bytes:
            letters.append(
                _file_letter(
                    "read",
                    info,
                    "too-large",
                    f"{info.uri}: {info.size} bytes, over the {settings.max_file_bytes}-byte limit",
                )
            )
    with ThreadPoolExecutor(max(1, min(settings.read_concurrency, len(wanted) or 1))) as pool:
        contents = list(pool.map(lambda o: _read(store, o, settings.max_file_bytes), wanted))
    documents: list[db.StagedDocument] = []
    for info, data in zip(wanted, contents, strict=True):
        if isinstance(data, TooLarge):
            letters.append(
                _file_letter("read", info, "too-large", f"{info.uri}: over the {settings.max_file_bytes}-byte limit")
            )
        elif isinstance(data, FileNotFoundError):
            letters.append(_file_letter("read", info, "not-found", f"{info.uri}: gone since it was listed"))
        elif isinstance(data, OutsideRoot):
            letters.append(_file_letter("read", info, "outside-root", f"{info.uri}: a link out of the pattern's root"))
        elif isinstance(data, Exception):
            letters.append(_file_letter("read", info, "read-error", f"{info.uri}: {type(data).__name__}"))
        elif injected_fault(settings.seed, info.uri, settings.fail_percentage):
            letters.append(
                _file_letter(
                    "stage",
                    info,
                    "injected-fault",
                    f"{DLQ_MARK} {info.uri}: fault injected (fail_percentage={settings.fail_percentage:g})",
                )
            )
        else:
            documents.append(build_document(info, data, settings))
    return documents


def extract_documents(
    cur: PgCursor, schema: str, extractor: DocumentExtractor, documents: list[DocumentText]
) -> tuple[list[tuple[str, Medical]], list[Extraction], int]:
    """Medical results for documents: from the cache, else the extractor (successes cached).

    Returns (ok rows, failed extractions, how many came from the cache).
    """
    cached = db.cached_extractions(
        cur,
        schema,
        sorted({d.sha256 for d in documents}),
        extractor=extractor.name,
        prompt_version=extractor.prompt_version,
        model=extractor.model,
    )
    misses = [d for d in documents if d.sha256 not in cached]
    cur.connection.commit()  # the model may take minutes: no transaction open meanwhile
    outcomes = {e.document_id: e for e in (extractor.extract(misses) if misses else [])}
    fresh = {d.sha256: outcomes[d.document_id].medical for d in misses if outcomes[d.document_id].ok}
    db.cache_extractions(
        cur,
        schema,
        fresh,  # type: ignore[arg-type]
        extractor=extractor.name,
        prompt_version=extractor.prompt_version,
        model=extractor.model,
    )
    rows: list[tuple[str, Medical]] = []
    failed: list[Extraction] = []
    for d in documents:
        if d.sha256 in cached:
            rows.append((d.document_id, cached[d.sha256]))
        elif outcomes[d.document_id].ok:
            rows.append((d.document_id, outcomes[d.document_id].medical))  # type: ignore[arg-type]
        else:
            failed.append(outcomes[d.document_id])
    return rows, failed, sum(1 for d in documents if d.sha256 in cached)


def extract_letters(
    failed: list[Extraction], uris: dict[str, str], extractor: str | None = None
) -> list[db.DeadLetterRow]:
    return [
        db.DeadLetterRow(
            stage="extract",
            source_kind="file",
            item_key=e.document_id,
            record_id=e.document_id,
            source_uri=uris.get(e.document_id),
            reason=e.reason or "extract-error",
            message=e.message,
            payload={"answer": e.payload} if e.payload else None,
            pointer=e.document_id,
            extractor=extractor,
        )
        for e in failed
    ]


def no_text_letters(documents: list[db.StagedDocument], extractor: str | None) -> list[db.DeadLetterRow]:
    """Documents of a text-bearing format whose text could not be got (a corrupt PDF, an unreadable image)."""
    return [
        db.DeadLetterRow(
            stage="extract",
            source_kind="file",
            item_key=d.id,
            record_id=d.id,
            source_uri=d.uri,
            reason="no-text",
            message=f"{d.uri}: {d.text_error or 'no text'}",
            pointer=d.id,
            extractor=extractor,
        )
        for d in documents
        if d.text is None and d.mime_sniffed in TEXT_BEARING
    ]


def process_file_batch(
    server: Any,
    store: ObjectStore,
    objects: list[ObjectInfo],
    settings: IngestSettings,
    extractor: DocumentExtractor | None,
    before: RunCounts | None = None,
) -> RunCounts:
    """Stage (and extract) one batch of listed objects.

    Every document read is staged in the batch's transaction, with the Medical rows of the documents
    extracted and the dead letters of the others; ``before`` (the run so far) is not consulted: the
    error rate decides only the run's final state.
    """
    counts = RunCounts(listed=len(objects))
    letters: list[db.DeadLetterRow] = []
    with transaction(server) as conn:
        with conn.cursor() as cur:
            known = db.known_versions(cur, settings.schema, [(o.uri, o.version) for o in objects])
            fresh = [o for o in objects if (o.uri, o.version) not in known]
            counts.skipped = len(objects) - len(fresh)
            conn.commit()  # no transaction stays open while objects are read or a model answers
            documents = read_objects(store, fresh, settings, counts, letters)
            # Same content under a new version tag (touched, re-uploaded): skipped, version remembered.
            s = quote_ident(settings.schema, "postgres")
            cur.execute(f"SELECT id::text FROM {s}.documents WHERE id = ANY(%s::uuid[])", ([d.id for d in documents],))
            existing = {row[0] for row in cur.fetchall()}
            if existing:
                cur.execute(
                    f"UPDATE {s}.documents d SET version = v.version FROM unnest(%s::uuid[], %s::text[]) "
                    f"AS v(id, version) WHERE d.id = v.id",
                    ([d.id for d in documents if d.id in existing], [d.version for d in documents if d.id in existing]),
                )
            conn.commit()
            counts.skipped += len(existing)
            documents = [d for d in documents if d.id not in existing]
            counts.new = len(fresh) - len(existing)

            rows: list[tuple[str, Medical]] = []
            if extractor is not None:
                texts = [DocumentText(d.id, d.sha256, d.text) for d in documents if d.text is not None]
                no_text = no_text_letters(documents, extractor.name)
                letters.extend(no_text)
                counts.not_extractable = len(documents) - len(texts) - len(no_text)
                rows, failed, counts.from_cache = extract_documents(cur, settings.schema, extractor, texts)
                conn.commit()  # the cache is kept whatever happens to the batch
                letters.extend(extract_letters(failed, {d.id: d.uri for d in documents}, extractor.name))

            if extractor is not None:  # a replay of any of them goes back to this extractor
                letters = [replace(letter, extractor=letter.extractor or extractor.name) for letter in letters]
            for letter in letters:
                counts.dead_lettered[f"{letter.stage}/{letter.reason}"] += 1
            staged = db.insert_documents(cur, settings.schema, documents, settings.run_id)
            counts.staged = len(staged)
            if extractor is not None:
                counts.extracted = db.insert_medical(
                    cur,
                    settings.schema,
                    rows,
                    extractor=extractor,
                    run_id=settings.run_id,
                )
            db.record_dead_letters(cur, settings.schema, letters, settings.run_id)
            # Items that went through (staged now or already staged) close their open read/stage letters.
            failed_keys = {letter.item_key for letter in letters}
            db.resolve_dead_letters(
                cur, settings.schema, [o.uri for o in objects if o.uri not in failed_keys], ("read", "stage")
            )
            db.resolve_dead_letters(cur, settings.schema, [doc_id for doc_id, _ in rows], ("extract",))
        return counts


def run_batches(
    objects: Iterable[Any],
    batch_size: int,
    process: Callable[[list[Any], RunCounts], RunCounts],
    on_batch: Callable[[RunCounts], None] | None = None,
) -> RunCounts:
    """Feed a stream of items to ``process`` in batches; stop when a batch crosses max_error_rate."""
    total = RunCounts()
    for batch in batched(objects, batch_size):
        result = process(batch, total)
        total.add(result)
        if on_batch is not None:
            on_batch(result)
        if result.stopped:
            break
    return total
