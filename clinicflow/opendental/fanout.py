"""The nightly's fan-out over its tables: partitions of a tier, and the parent's report of each child.

Partitions follow the in-pod nightly's grouping (one per large table, small tables in groups); a child
records each table's outcome in ``clinicflow.etl_table_metrics`` under the parent's run id, and the parent
reads them back (:func:`recorded_outcomes`) to report each partition. The generic part (child keys, rerun
decisions, polling) is :mod:`clinicflow.scaleout.fanout`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

from clinicflow.core.dbapi import PgConnection
from clinicflow.core.sql import quote_ident
from clinicflow.core.verdicts import failed_of
from clinicflow.opendental.metrics import METRICS_SCHEMA, TableOutcome
from clinicflow.opendental.tables.config import TablesConfig
from clinicflow.scaleout.fanout import ChildRun


@dataclass(frozen=True)
class Partition:
    """One child run's share of the work: a name that stays the same from run to run, and its tables."""

    name: str
    tier: int
    tables: tuple[str, ...]


def plan_table_partitions(
    config: TablesConfig, names: list[str], *, small_rows: int, group_size: int
) -> list[list[Partition]]:
    """The partitions of each tier, lowest tier first: one per large table, small tables in groups.

    The grouping is the in-pod nightly's (tables.yml ``estimated_rows`` <= ``small_rows`` go in groups
    of ``group_size``), so a partition holds exactly what one in-pod chain or group task would.
    """
    if group_size < 1:
        raise ValueError(f"fan-out: small-table group size must be at least 1, got {group_size}")
    tiers: list[list[Partition]] = []
    for tier, tier_names in config.by_tier(names):
        small = [t for t in tier_names if config.effective(t).estimated_rows <= small_rows]
        parts = [
            Partition(
                f"t{tier}-small-{group[0]}..{group[-1]}" if len(group) > 1 else f"t{tier}-small-{group[0]}",
                tier,
                tuple(group),
            )
            for group in (small[i : i + group_size] for i in range(0, len(small), group_size))
        ]
        parts += [Partition(f"t{tier}-{t}", tier, (t,)) for t in tier_names if t not in small]
        tiers.append(parts)
    return tiers


def without_tables(tiers: list[list[Partition]], skipped: Collection[str]) -> list[list[Partition]]:
    """``tiers`` less the ``skipped`` tables, each partition keeping its name; emptied partitions and tiers go.

    Plan first, then skip (the tables the catalog found unchanged): a rerun under the same run key then
    finds the partitions its earlier attempt completed by their names, whatever the catalog says tonight.
    """
    out = []
    for parts in tiers:
        trimmed = [replace(p, tables=tuple(t for t in p.tables if t not in skipped)) for p in parts]
        if left := [p for p in trimmed if p.tables]:
            out.append(left)
    return out


@dataclass
class PartitionReport:
    """One row of the parent's artifact."""

    partition: str
    tier: int
    tables: int
    status: str  # ok | failed
    attempt: int
    child_state: str
    rows: int = 0
    seconds: float = 0.0
    failed_tables: list[str] = field(default_factory=list)
    error: str = ""
    flow_run_id: str = ""

    def as_row(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "tier": self.tier,
            "tables": self.tables,
            "status": self.status,
            "attempt": self.attempt,
            "child_state": self.child_state,
            "rows": self.rows,
            "seconds": round(self.seconds, 2),
            "failed_tables": ", ".join(self.failed_tables),
            "error": self.error,
            "flow_run_id": self.flow_run_id,
        }


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
    return PartitionReport(
        partition=partition.name,
        tier=partition.tier,
        tables=len(partition.tables),
        status="ok" if ok else "failed",
        attempt=child.attempt,
        child_state=child.state_name or child.state_type,
        rows=sum(int(table_rows[t].get("rows") or 0) for t in partition.tables if t in table_rows),
        seconds=child.seconds,
        failed_tables=failed if not ok else [],
        error=error,
        flow_run_id=child.flow_run_id,
    )


def failed_partitions_message(reports: list[PartitionReport]) -> str:
    """One line naming the failed partitions (empty when none failed)."""
    return (
        failed_of([f"{r.partition} ({r.error})" for r in reports if r.status != "ok"], len(reports), "partitions") or ""
    )


def recorded_outcomes(
    pg_conn: PgConnection, run_id: str, tables: list[str], schema: str = METRICS_SCHEMA
) -> dict[str, TableOutcome]:
    """The outcomes children recorded for ``tables`` under ``run_id`` (every column, so re-recording keeps them)."""
    fields = [f for f in TableOutcome.__dataclass_fields__ if f != "table"]
    with pg_conn.cursor() as cur:
        cur.execute(
            f"SELECT table_name, {', '.join(fields)} FROM {quote_ident(schema, 'postgres')}.etl_table_metrics "
            "WHERE run_id = %s AND table_name = ANY(%s)",
            (run_id, list(tables)),
        )
        rows = cur.fetchall()
    pg_conn.rollback()
    found: dict[str, TableOutcome] = {}
    for row in rows:
        values = dict(zip(fields, row[1:], strict=True))
        values["conversions"] = values["conversions"] or {}
        values["reconciliation"] = values["reconciliation"] or {}
        found[row[0]] = TableOutcome(table=row[0], **values)
    return found
