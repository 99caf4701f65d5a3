"""Fan-out of a run into child deployment runs: partitions, keys, backoff, aggregation (no Prefect here).

A parent run splits its work into named partitions (the tables of a tier, a
group of small tables, ...), starts one child run per partition with the
idempotency key :func:`child_key` and waits for them. Children write their
results where they belong (PostgreSQL) and the parent reads them back from
there, so nothing depends on Prefect result storage across pods.

A rerun with the same run key looks at the children already started for it
(:func:`next_action`): a completed partition is kept, a running one is waited
for, a failed / crashed / cancelled one gets a new attempt (a new key).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from clinicflow.core.dbapi import PgConnection
from clinicflow.core.sql import quote_ident
from clinicflow.core.verdicts import failed_of
from clinicflow.opendental.metrics import METRICS_SCHEMA, TableOutcome
from clinicflow.opendental.tables.config import TablesConfig

DEFAULT_CONCURRENCY_LIMIT = "clinicflow-fanout"
DEFAULT_CONCURRENCY_SLOTS = 4
# Prefect state types of a finished child run that did not complete.
FAILED_STATE_TYPES = frozenset({"FAILED", "CRASHED", "CANCELLED"})
_ATTEMPT_MARK = "#"


@dataclass(frozen=True)
class Partition:
    """One child run's share of the work: a name that stays the same from run to run, and its tables."""

    name: str
    tier: int
    tables: tuple[str, ...]


def plan_table_partitions(config: TablesConfig, names: list[str], *, small_rows: int,
                          group_size: int) -> list[list[Partition]]:
    """The partitions of each tier, lowest tier first: one per large table, small tables in groups.

    The grouping is the in-pod nightly's (tables.yml ``estimated_rows`` <= ``small_rows`` go in groups
    of ``group_size``), so a partition holds exactly what one in-pod chain or group task would.
    """
    if group_size < 1:
        raise ValueError(f"fan-out: small-table group size must be at least 1, got {group_size}")
    tiers: list[list[Partition]] = []
    for tier, tier_names in config.by_tier(names):
        small = [t for t in tier_names if config.effective(t).estimated_rows <= small_rows]
        parts = [Partition(f"t{tier}-small-{group[0]}..{group[-1]}" if len(group) > 1 else f"t{tier}-small-{group[0]}",
                           tier, tuple(group))
                 for group in (small[i:i + group_size] for i in range(0, len(small), group_size))]
        parts += [Partition(f"t{tier}-{t}", tier, (t,)) for t in tier_names if t not in small]
        tiers.append(parts)
    return tiers


def child_key(run_key: str, partition: str, attempt: int = 0) -> str:
    """The idempotency key of a partition's child run: the same key never starts a second run."""
    base = f"{run_key}:{partition}"
    return base if attempt == 0 else f"{base}{_ATTEMPT_MARK}{attempt}"


def parse_child_key(run_key: str, key: str | None) -> tuple[str, int] | None:
    """(partition, attempt) of a key made by :func:`child_key` for ``run_key``, else None."""
    prefix = f"{run_key}:"
    if not key or not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    partition, mark, attempt = rest.rpartition(_ATTEMPT_MARK)
    if mark and attempt.isdigit():
        return partition, int(attempt)
    return rest, 0


@dataclass
class ChildRun:
    """What the parent knows of one child run (read back from the Prefect API)."""

    partition: str
    attempt: int
    flow_run_id: str
    state_type: str          # Prefect StateType value: SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, ...
    state_name: str = ""
    message: str = ""
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state_type == "COMPLETED" or self.state_type in FAILED_STATE_TYPES

    @property
    def failed(self) -> bool:
        return self.state_type in FAILED_STATE_TYPES


def latest_attempts(children: list[ChildRun]) -> dict[str, ChildRun]:
    """Per partition, the child run of the highest attempt."""
    latest: dict[str, ChildRun] = {}
    for child in children:
        if child.partition not in latest or child.attempt > latest[child.partition].attempt:
            latest[child.partition] = child
    return latest


def next_action(previous: ChildRun | None) -> tuple[str, int]:
    """What a (re)run does with a partition, and the attempt to start: start, keep, wait or retry."""
    if previous is None:
        return "start", 0
    if previous.state_type == "COMPLETED":
        return "keep", previous.attempt
    if previous.failed:
        return "retry", previous.attempt + 1
    return "wait", previous.attempt


def poll_delays(first: float = 1.0, factor: float = 1.5, cap: float = 10.0) -> Iterator[float]:
    """Seconds to sleep between polls of the children: growing, never above ``cap``."""
    if first <= 0 or factor < 1 or cap < first:
        raise ValueError(f"fan-out backoff: need 0 < first <= cap and factor >= 1 (got {first}, {factor}, {cap})")
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


@dataclass
class PartitionReport:
    """One row of the parent's artifact."""

    partition: str
    tier: int
    tables: int
    status: str              # ok | failed
    attempt: int
    child_state: str
    rows: int = 0
    seconds: float = 0.0
    failed_tables: list[str] = field(default_factory=list)
    error: str = ""
    flow_run_id: str = ""

    def as_row(self) -> dict[str, Any]:
        return {"partition": self.partition, "tier": self.tier, "tables": self.tables, "status": self.status,
                "attempt": self.attempt, "child_state": self.child_state, "rows": self.rows,
                "seconds": round(self.seconds, 2), "failed_tables": ", ".join(self.failed_tables),
                "error": self.error, "flow_run_id": self.flow_run_id}


def report_partition(partition: Partition, child: ChildRun, table_rows: dict[str, dict[str, Any]]) -> PartitionReport:
    """Aggregate a finished child: its state and the metrics rows its tables wrote (``table_name`` -> row).

    A table without a metrics row (the child died before recording it) counts as failed.
    """
    failed = [t for t in partition.tables if t not in table_rows or table_rows[t].get("status") == "failed"]
    ok = child.state_type == "COMPLETED" and not failed
    error = ""
    if not ok:
        missing = [t for t in partition.tables if t not in table_rows]
        parts = [f"child run {child.state_name or child.state_type}"]
        if child.message:
            parts.append(" ".join(child.message.split())[:300])
        if missing:
            parts.append(f"no result for {', '.join(missing)}")
        error = "; ".join(parts)
    return PartitionReport(partition=partition.name, tier=partition.tier, tables=len(partition.tables),
                           status="ok" if ok else "failed", attempt=child.attempt,
                           child_state=child.state_name or child.state_type,
                           rows=sum(int(table_rows[t].get("rows") or 0) for t in partition.tables if t in table_rows),
                           seconds=child.seconds, failed_tables=failed if not ok else [], error=error,
                           flow_run_id=child.flow_run_id)


def failed_partitions_message(reports: list[PartitionReport]) -> str:
    """One line naming the failed partitions (empty when none failed)."""
    return failed_of([f"{r.partition} ({r.error})" for r in reports if r.status != "ok"], len(reports),
                     "partitions") or ""


def failed_children_message(children: dict[str, ChildRun], things: str) -> str | None:
    """``"N of M <things> failed: name (child run Crashed: message); ..."`` for the children (partition name ->
    finished child) that did not complete (the first five), or None when every one completed."""
    failed = [f"{name} (child run {c.state_name or c.state_type}{': ' + c.message[:200] if c.message else ''})"
              for name, c in sorted(children.items()) if c.state_type != "COMPLETED"]
    return failed_of(failed, len(children), things, limit=5)


def overhead_per_child(fanned_seconds: float, in_pod_seconds: float, children: int, workers: int) -> float:
    """Seconds each child run added over the in-pod run, with ``workers`` children running at a time."""
    if children < 1 or workers < 1:
        raise ValueError("fan-out overhead: need at least one child and one worker")
    return (fanned_seconds - in_pod_seconds) * workers / children


def recorded_outcomes(pg_conn: PgConnection, run_id: str, tables: list[str],
                      schema: str = METRICS_SCHEMA) -> dict[str, TableOutcome]:
    """The outcomes children recorded for ``tables`` under ``run_id`` (every column, so re-recording keeps them)."""
    fields = [f for f in TableOutcome.__dataclass_fields__ if f != "table"]
    with pg_conn.cursor() as cur:
        cur.execute(f"SELECT table_name, {', '.join(fields)} FROM {quote_ident(schema, 'postgres')}.etl_table_metrics "
                    "WHERE run_id = %s AND table_name = ANY(%s)", (run_id, list(tables)))
        rows = cur.fetchall()
    pg_conn.rollback()
    found: dict[str, TableOutcome] = {}
    for row in rows:
        values = dict(zip(fields, row[1:], strict=True))
        values["conversions"] = values["conversions"] or {}
        values["reconciliation"] = values["reconciliation"] or {}
        found[row[0]] = TableOutcome(table=row[0], **values)
    return found
