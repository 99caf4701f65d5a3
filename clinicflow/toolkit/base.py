"""The toolkit's vocabulary: batches, the three tool protocols, the run context, dead letters.

An Extractor yields batches; a Transformer maps one batch to one batch; a
Loader consumes a stream of batches and returns how many rows it wrote.
Memory is bounded by the batch size: nothing in the toolkit collects a stream.
No Prefect here: the Prefect wiring lives in ``flows/pipeline.py``.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from clinicflow.core.errors import ClinicflowError


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


@dataclass
class RunContext:
    """What every tool sees of the run: pipeline name, parameters, the time scope, a logger."""

    pipeline: str = "adhoc"
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
    """One rejected row: where it came from, why, and the row itself (kept out of logs)."""

    step: str
    row_index: int
    column: str | None
    error: str
    row: dict[str, Any]


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
    """Dead letters appended to a JSON Lines file, one object per rejected row."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def put(self, letter: DeadLetter) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"step": letter.step, "row_index": letter.row_index, "column": letter.column,
                           "error": letter.error, "row": letter.row}, default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


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
            pending.extend(rows[start:start + take])
            start += take
            if len(pending) == size:
                yield Batch(columns, pending)
                pending = []
    if pending and columns is not None:
        yield Batch(columns, pending)
