"""DICOM reports fan-out: the reports source split into key ranges of whole files (no Prefect here).

The DICOM flow reads the source in keyset pages over the file key
(study, series, instance, location). A fanned-out run splits that same key
order into contiguous ranges ``[low, high)`` whose bounds are file keys
sampled from the source (:meth:`ReportsSource.keys_at_ranks`), so:

- a file (all its report rows share its key) is in exactly one range, never split;
- the first range starts unbounded and the last ends unbounded, so every key,
  even one added to the source after planning, falls in exactly one range;
- ranges hold about the same number of files.

Each range becomes a child run that converts its files under the parent's run id
(``seen_run``), so the parent writes ``reports.csv`` and ``failures.csv`` from
PostgreSQL at the end exactly as an in-pod run does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.core.sql import quote_ident
from clinicflow.dicom.pipeline import BatchResult
from clinicflow.dicom.reports import FileKey, ReportsSource
from clinicflow.dicom.state import Failure

KeyBound = tuple[Any, ...]


@dataclass(frozen=True)
class FileKeyRange:
    """Files with ``low <= key < high`` in the source's key order (None: unbounded)."""

    low: KeyBound | None
    high: KeyBound | None

    def contains(self, key: KeyBound) -> bool:
        """Whether ``key`` is in the range, by Python tuple order (the source's order for text and numbers)."""
        return (self.low is None or tuple(key) >= self.low) and (self.high is None or tuple(key) < self.high)

    def digest(self) -> str:
        """A short hash of the bounds."""
        return hashlib.sha256(json.dumps(self.as_parameter(), sort_keys=True).encode()).hexdigest()[:8]

    def name(self, index: int) -> str:
        """A partition name that changes when the bounds change (a rerun never keeps a child of other bounds)."""
        return f"keys-{index + 1:03d}-{self.digest()}"

    def as_parameter(self) -> list[list[Any] | None]:
        """``[low, high]`` as JSON values for a child run's parameters."""
        return [None if b is None else [_json_value(v) for v in b] for b in (self.low, self.high)]

    @classmethod
    def from_parameter(cls, value: list[list[Any] | None]) -> FileKeyRange:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"key_range must be [low, high] (each a file key or null), got {value!r}")
        low, high = (None if b is None else tuple(b) for b in value)
        return cls(low, high)


def boundary_ranks(files: int, partitions: int) -> list[int]:
    """1-based ranks (in key order) of the files that open ranges 2..n: ``n = min(partitions, files)`` ranges."""
    if partitions < 1:
        raise ValueError(f"DICOM fan-out: partitions must be at least 1, got {partitions}")
    count = min(partitions, files)
    return [1 + (i * files) // count for i in range(1, count)]


def key_ranges(boundaries: list[KeyBound], *, files: int) -> list[FileKeyRange]:
    """Contiguous ranges from sorted distinct boundary keys: none for an empty source, else unbounded ends."""
    if files == 0:
        return []
    bounds: list[KeyBound | None] = [None, *boundaries, None]
    return [FileKeyRange(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def plan_key_ranges(source: ReportsSource, files: int, partitions: int) -> list[FileKeyRange]:
    """About ``partitions`` ranges of whole files of ``source`` (``files`` distinct keys, from its count)."""
    return key_ranges(source.keys_at_ranks(boundary_ranks(files, partitions)), files=files)


def _json_value(value: Any) -> Any:
    """A key value as JSON (PostgreSQL reads a text bound back as the column's type)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def recorded_run_totals(
    state_server: Any, schema: str, dataset: str, run_id: str, max_failures: int = 500
) -> BatchResult:
    """What the children of ``run_id`` recorded in the state tables: files done and failed, bytes, JPGs.

    ``done`` counts every done file the run saw (converted by a child or found done from an earlier run).
    """
    s = quote_ident(schema, "postgres")
    with connected(state_server) as conn:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'failed'), "
                f"coalesce(sum(bytes) FILTER (WHERE status = 'done'), 0), "
                f"coalesce(sum(jpgs) FILTER (WHERE status = 'done'), 0) "
                f"FROM {s}.files WHERE dataset = %s AND seen_run = %s",
                (dataset, run_id),
            )
            done, failed, size, jpgs = cur.fetchone()
            cur.execute(
                f"SELECT stage, kind, count(*) FROM {s}.files "
                f"WHERE dataset = %s AND seen_run = %s AND status = 'failed' GROUP BY 1, 2",
                (dataset, run_id),
            )
            by_kind = {f"{stage}/{kind}": int(n) for stage, kind, n in cur}
            cur.execute(
                f"SELECT study_id, series_id, instance_id, file_location, stage, kind, reason "
                f"FROM {s}.files WHERE dataset = %s AND seen_run = %s AND status = 'failed' "
                f'ORDER BY study_id COLLATE "C", series_id COLLATE "C", instance_id COLLATE "C", '
                f'file_location COLLATE "C" LIMIT %s',
                (dataset, run_id, max_failures),
            )
            failures = [Failure(FileKey(*row[:4]), row[4] or "", row[5] or "", row[6] or "") for row in cur]
        conn.rollback()
    total = BatchResult(
        files=int(done) + int(failed),
        done=int(done),
        failed=int(failed),
        bytes=int(size),
        jpgs=int(jpgs),
        failures=failures,
    )
    total.failure_counts.update(by_kind)
    return total
