"""The ``synthetic`` source kind: generated blob / logs / events records for demos and drills.

Pattern ``synthetic://<kind>?count=N&seed=S`` (kind: ``blob``, ``logs``,
``events``). Records are validated Pydantic models with stable ids
(``<kind>-<n>``), the same for the same seed. With ``fail_percentage`` a
seeded choice of records is marked ``[DLQ]`` and rejected at the ``load``
stage: a dead letter holding the clean record, so a replay (with the
percentage at 0) loads it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, Field, ValidationError

from clinicflow.connectors.connections import transaction
from clinicflow.connectors.objectstore.patterns import Location, PatternError
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.sql import quote_ident
from clinicflow.ingest import db
from clinicflow.ingest.faults import DLQ_MARK, injected_fault
from clinicflow.ingest.pipeline import IngestSettings, RunCounts

KINDS = ("blob", "logs", "events")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class BlobRecord(BaseModel):
    kind: Literal["blob"] = "blob"
    record_id: str
    name: str
    content_type: str
    content: str = Field(max_length=10_000)


class LogRecord(BaseModel):
    kind: Literal["logs"] = "logs"
    record_id: str
    timestamp: datetime
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    service: str
    message: str


class EventRecord(BaseModel):
    kind: Literal["events"] = "events"
    record_id: str
    timestamp: datetime
    event_type: str
    patient_ref: str
    attributes: dict[str, str] = Field(default_factory=dict)


SyntheticRecord = BlobRecord | LogRecord | EventRecord
_MODELS: dict[str, type[BaseModel]] = {"blob": BlobRecord, "logs": LogRecord, "events": EventRecord}


class RejectedRecord(ClinicflowError, ValueError):
    """A record the load stage refuses (``reason`` is the dead letter's reason code)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_synthetic(location: Location) -> tuple[str, int, int]:
    """(kind, count, seed) of a ``synthetic://`` location."""
    if location.bucket not in KINDS:
        raise PatternError(f"synthetic kind must be one of {', '.join(KINDS)}, not {location.bucket!r}")
    query = {k: v[-1] for k, v in parse_qs(location.query).items()}
    try:
        count, seed = int(query.get("count", "100")), int(query.get("seed", "0"))
    except ValueError:
        raise PatternError(f"synthetic://{location.bucket}: count and seed must be integers") from None
    if count < 0:
        raise PatternError(f"synthetic://{location.bucket}: count must not be negative")
    return location.bucket, count, seed


def generate(kind: str, count: int, seed: int) -> Iterator[SyntheticRecord]:
    """``count`` records of ``kind``, streamed; the same seed gives the same records."""
    rng = random.Random(f"{kind}:{seed}")
    for n in range(count):
        record_id = f"{kind}-{n:07d}"
        when = _EPOCH + timedelta(seconds=rng.randrange(0, 365 * 86400))
        if kind == "blob":
            yield BlobRecord(
                record_id=record_id,
                name=f"note-{n}.txt",
                content_type="text/plain",
                content=f"Visit note {n}: tooth {rng.randint(1, 32)} checked.",
            )
        elif kind == "logs":
            yield LogRecord(
                record_id=record_id,
                timestamp=when,
                level=rng.choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
                service=rng.choice(["scheduler", "imaging", "billing"]),
                message=f"operation {n} done",
            )
        else:
            yield EventRecord(
                record_id=record_id,
                timestamp=when,
                event_type=rng.choice(["appointment.booked", "claim.sent", "xray.taken"]),
                patient_ref=f"P{rng.randint(1, 5000):05d}",
                attributes={"clinic": f"C{rng.randint(1, 9)}"},
            )


def inject(record: SyntheticRecord, settings: IngestSettings) -> SyntheticRecord:
    """The record, marked ``[DLQ]`` when the seeded fault injection picks it."""
    if not injected_fault(settings.seed, record.record_id, settings.fail_percentage):
        return record
    text_field = {"blob": "content", "logs": "message", "events": "event_type"}[record.kind]
    return record.model_copy(update={text_field: f"{DLQ_MARK} {getattr(record, text_field)}"})


def check_record(record: SyntheticRecord) -> None:
    """The load stage's validation: a ``[DLQ]``-marked record is rejected."""
    if DLQ_MARK in record.model_dump_json():
        raise RejectedRecord("injected-fault", f"{DLQ_MARK} {record.record_id}: fault injected")


def record_from_payload(payload: dict[str, Any]) -> SyntheticRecord:
    model = _MODELS.get(str(payload.get("kind")))
    if model is None:
        raise RejectedRecord("invalid-record", f"unknown synthetic kind {payload.get('kind')!r}")
    try:
        return model.model_validate(payload)  # type: ignore[return-value]
    except ValidationError as exc:
        raise RejectedRecord(
            "invalid-record", f"{payload.get('record_id')}: {exc.error_count()} invalid field(s)"
        ) from None


def load_records(
    server: Any, records: list[SyntheticRecord], settings: IngestSettings, before: RunCounts | None = None
) -> RunCounts:
    """Load one batch of synthetic records (``ON CONFLICT DO NOTHING``); rejected ones are dead-lettered."""
    from psycopg2.extras import execute_values

    counts = RunCounts(listed=len(records))
    s = quote_ident(settings.schema, "postgres")
    letters: list[db.DeadLetterRow] = []
    good: list[SyntheticRecord] = []
    with transaction(server) as conn:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT record_id FROM {s}.synthetic_records WHERE record_id = ANY(%s)",
                ([r.record_id for r in records],),
            )
            existing = {row[0] for row in cur.fetchall()}
            counts.skipped = len(existing)
            counts.new = len(records) - len(existing)
            for original in records:
                if original.record_id in existing:
                    continue
                try:
                    check_record(inject(original, settings))
                    good.append(original)
                except RejectedRecord as exc:
                    letters.append(
                        db.DeadLetterRow(
                            stage="load",
                            source_kind="synthetic",
                            item_key=original.record_id,
                            record_id=original.record_id,
                            reason=exc.reason,
                            message=str(exc),
                            payload=json.loads(original.model_dump_json()),
                        )
                    )
                    counts.dead_lettered[f"load/{exc.reason}"] += 1
            if (before or RunCounts()).crosses(counts, settings.max_error_rate):
                db.record_dead_letters(cur, settings.schema, letters, settings.run_id)
                conn.commit()
                counts.stopped = True
                return counts
            if good:
                inserted = execute_values(
                    cur,
                    f"INSERT INTO {s}.synthetic_records (record_id, kind, payload, run_id) VALUES %s "
                    f"ON CONFLICT DO NOTHING RETURNING 1",
                    [(r.record_id, r.kind, r.model_dump_json(), settings.run_id) for r in good],
                    fetch=True,
                    page_size=len(good),
                )
                counts.staged = len(inserted)
            db.record_dead_letters(cur, settings.schema, letters, settings.run_id)
            db.resolve_dead_letters(cur, settings.schema, [r.record_id for r in good], ("load",))
        return counts
