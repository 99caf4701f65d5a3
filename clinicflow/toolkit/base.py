"""The toolkit's vocabulary: batches, the three tool protocols, the run context, dead letters.

An Extractor yields batches; a Transformer maps one batch to one batch; a
Loader consumes a stream of batches and returns how many rows it wrote.
Memory is bounded by the batch size: nothing in the toolkit collects a stream.
No Prefect here: the Prefect wiring lives in ``flows/pipeline.py``.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from clinicflow.core.errors import ClinicflowError

# A loader's table that does not exist: the loaders create nothing unless told how.
NO_TABLE_HINT = " (the loader creates no table: give it a create_sql, e.g. CREATE TABLE IF NOT EXISTS ...)"


class ToolkitError(ClinicflowError):
    """A pipeline, spec or tool problem; the message names what failed and never holds credentials."""


@dataclass
class Batch:
    """Rows as tuples under one column list (cheaper than a dict per row)."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.rows)

    def as_dicts(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            yield dict(zip(self.columns, row, strict=False))

    @classmethod
    def from_dicts(cls, records: Iterable[dict[str, Any]], columns: Iterable[str] | None = None) -> Batch:
        records = list(records)
        if columns is None:
            seen: dict[str, None] = {}
            for record in records:
                for key in record:
                    seen.setdefault(key, None)
            columns = seen
        cols = tuple(columns)
        return cls(cols, [tuple(record.get(c) for c in cols) for record in records])


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default`` for what batches hold besides JSON's own types."""
    from datetime import date
    from decimal import Decimal

    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def nested_as_json(value: Any) -> Any:
    """An object or a list from a JSON source (an API's nested record) as its JSON text; anything else as is.

    Text sinks (CSV, PostgreSQL's COPY and json/jsonb/text columns) then hold JSON, never Python's repr.
    """
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=json_default)
    return value


def new_run_id() -> str:
    """A run id for runs outside Prefect: sortable by time, unique."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass
class RunContext:
    """What every tool sees of the run: pipeline name, run id, the step, parameters, the time scope, a logger."""

    pipeline: str = "adhoc"
    run_id: str = field(default_factory=new_run_id)
    step: str | None = None  # the leaf step running (set per step: parallel branches each have their own)
    parameters: dict[str, Any] = field(default_factory=dict)
    start: datetime | None = None
    end: datetime | None = None
    results: dict[str, Any] = field(default_factory=dict)
    # (dialect, connection name) -> an object with connect()/describe(); set by the Prefect wiring.
    connections: Callable[[str, str], Any] | None = None
    logger: Any = field(default_factory=lambda: logging.getLogger("clinicflow.toolkit"))


@runtime_checkable
class Extractor(Protocol):
    def extract(self, ctx: RunContext) -> Iterator[Batch]: ...


@runtime_checkable
class Transformer(Protocol):
    def transform(self, batch: Batch, ctx: RunContext) -> Batch: ...


@runtime_checkable
class Loader(Protocol):
    def load(self, batches: Iterable[Batch], ctx: RunContext) -> int: ...


@dataclass(frozen=True)
class DeadLetter:
    """One rejected row: the run and step it came from, why, and the row itself (kept out of logs)."""

    step: str
    row_index: int
    column: str | None
    error: str
    row: dict[str, Any]
    run_id: str | None = None
    tool: str | None = None  # the transformer that rejected it, inside the step


class DeadLetterSink(Protocol):
    def put(self, letter: DeadLetter) -> None: ...


class MemoryDeadLetters:
    """Dead letters kept in a list: for tests and the console."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self._lock = threading.Lock()

    def put(self, letter: DeadLetter) -> None:
        with self._lock:
            self.letters.append(letter)


class JsonlDeadLetters:
    """Dead letters of one step of one run: ``<folder>/<run id>/<step>.jsonl``, one object per rejected row.

    The file is created at the first rejected row; a run's folder holds only that run's
    steps, so nothing is appended run after run. ``keep_runs`` run folders are kept (the
    newest), older ones are deleted when a run starts writing.
    """

    def __init__(self, folder: str | Path, *, run_id: str, step: str, keep_runs: int = 30) -> None:
        self.folder = Path(folder)
        self.path = self.folder / _safe(run_id) / f"{_safe(step)}.jsonl"
        self.keep_runs = keep_runs
        self._lock = threading.Lock()
        self._started = False

    def put(self, letter: DeadLetter) -> None:
        line = json.dumps(
            {
                "run_id": letter.run_id,
                "step": letter.step,
                "tool": letter.tool,
                "row_index": letter.row_index,
                "column": letter.column,
                "reason": letter.error,
                "row": letter.row,
            },
            default=str,
        )
        with self._lock:
            if not self._started:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._prune()
                self._started = True
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")

    def _prune(self) -> None:
        runs = sorted((p for p in self.folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in runs[: max(0, len(runs) - self.keep_runs)]:
            if old != self.path.parent:
                shutil.rmtree(old, ignore_errors=True)


def _safe(name: str) -> str:
    """A file-name-safe form of a run id or step name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def rebatch(batches: Iterable[Batch], size: int) -> Iterator[Batch]:
    """Regroup a stream into batches of ``size`` rows (the last may be short); a column change starts a new batch."""
    if size <= 0:
        raise ValueError("batch size must be positive")
    pending: list[tuple[Any, ...]] = []
    columns: tuple[str, ...] | None = None
    for batch in batches:
        if columns is not None and batch.columns != columns and pending:
            yield Batch(columns, pending)
            pending = []
        columns = batch.columns
        rows, start = batch.rows, 0
        if not pending and len(rows) == size:
            yield batch
            continue
        while start < len(rows):
            take = min(size - len(pending), len(rows) - start)
            pending.extend(rows[start : start + take])
            start += take
            if len(pending) == size:
                yield Batch(columns, pending)
                pending = []
    if pending and columns is not None:
        yield Batch(columns, pending)
