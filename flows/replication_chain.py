"""The replication chain of one table (plan → copy chunks, or one incremental run → swap-in), and
``replicate_tables``' tier runner built on it.

Wiring only. :class:`ReplicationChain` submits each step the moment the
table's previous one finished and hands the copied table on (:class:`Copied`,
the swap-in still running) to whoever started it: the load chain
(flows/load_chain.py) loads it, :class:`ReplicationRun` records it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from prefect.futures import PrefectFuture

from blocks.databases import MySQLServer
from clinicflow.core.logs import get_logger
from clinicflow.opendental.replication import copy_plan, replica_copy
from clinicflow.opendental.tables.config import TablesConfig
from flows.chains import Futures, TierRun, error_text, future_error
from tasks import replication as repl_tasks


def warn_dropped_leftovers(names: list[str]) -> None:
    if names:
        get_logger().warning("dropped %d table(s) a killed run left in the replica: %s", len(names), ", ".join(names))


@dataclass
class Copied:
    """A table's replication once its copies ended: the rows copied and the swap-in (full copies) under way."""

    plan: copy_plan.CopyPlan
    rows: int = 0
    reconciled: Any = None  # what the reconciliation with the source repaired (incremental tables), or None
    swap: PrefectFuture[Any] | None = None


class ReplicationChain:
    """Replicates tables in ``run``'s chains; ``then(table, copied)`` once a table's copies ended."""

    def __init__(
        self,
        run: TierRun,
        source: MySQLServer,
        replica: MySQLServer,
        config: TablesConfig,
        *,
        full_refresh: bool,
        full_sweep: bool,
        then: Callable[[str, Copied], None],
        planned: Callable[[str, copy_plan.CopyPlan], None] | None = None,
    ) -> None:
        self.run, self.source, self.replica, self.config = run, source, replica, config
        self.full_refresh, self.full_sweep = full_refresh, full_sweep
        self.then, self.planned = then, planned

    def start(self, table: str) -> None:
        self.run.started[table] = time.time()
        plan_f = repl_tasks.plan_copy.submit(
            self.source, self.replica, table, self.config.effective(table), self.full_refresh, self.full_sweep
        )
        self.run.when_done(table, "replication", [plan_f], lambda fs: self._copy(table, fs[0]))

    def _copy(self, table: str, plan_f: PrefectFuture[Any]) -> None:
        if (err := future_error(plan_f)) is not None:
            return self.run.fail(table, "replication", err)
        plan = plan_f.result()
        if self.planned is not None:
            self.planned(table, plan)
        if plan.mode == "unchanged":
            return self.then(table, Copied(plan))
        if plan.mode == "incremental":
            copies = [repl_tasks.copy_incremental.submit(self.source, self.replica, plan)]
        else:
            copies = [
                repl_tasks.copy_chunk.submit(self.source, self.replica, plan, unit, unit.label if unit else "all")
                for unit in replica_copy.full_copy_units(plan)
            ]
        self.run.when_done(table, "replication", copies, lambda fs: self._swap(table, plan, fs))
        return None

    def _swap(self, table: str, plan: copy_plan.CopyPlan, copies: Futures) -> None:
        for copy in copies:
            if (err := future_error(copy)) is not None:
                return self.run.fail(table, "replication", err)
        results = [c.result() for c in copies]
        reconciled = next((r.reconciled for r in results if r.reconciled is not None), None)
        swap = repl_tasks.swap_in.submit(self.replica, plan) if plan.mode == "full" else None
        return self.then(table, Copied(plan, sum(r.rows for r in results), reconciled, swap))


@dataclass
class ReplicatedTable:
    """One table's outcome in ``replicate_tables`` (a row of its ``replication-summary`` artifact)."""

    table: str
    tier: int
    mode: str = ""
    rows: int = 0
    seconds: float = 0.0
    status: str = "ok"
    error: str = ""
    reconciled: str = ""  # what the reconciliation with the source repaired (incremental tables)

    def row(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "tier": self.tier,
            "mode": self.mode,
            "rows": self.rows,
            "seconds": round(self.seconds, 2),
            "status": self.status,
            "reconciled": self.reconciled,
            "error": self.error,
        }


def reconciled_text(summary: Any) -> str:
    """What a reconciliation repaired, as the summary artifact shows it."""
    s = summary
    return (
        f"{s.swept}: {s.rows_deleted} deleted, {s.rows_missing} missing copied, "
        f"{s.rows_changed} changed copied, {s.ranges_recopied}/{s.ranges} ranges re-read"
    )


class ReplicationRun(TierRun):
    """One tier of ``replicate_tables``: every table's replication chain, one :class:`ReplicatedTable` each."""

    def __init__(
        self,
        source: MySQLServer,
        replica: MySQLServer,
        config: TablesConfig,
        *,
        tier: int,
        full_refresh: bool,
        full_sweep: bool,
    ) -> None:
        super().__init__(tier)
        self.replicated: dict[str, ReplicatedTable] = {}
        self.chain = ReplicationChain(
            self,
            source,
            replica,
            config,
            full_refresh=full_refresh,
            full_sweep=full_sweep,
            then=self._copied,
            planned=self._planned,
        )

    def fail(
        self, table: str, stage: str, error: BaseException | str, replication_info: dict[str, Any] | None = None
    ) -> None:
        done = self.replicated.setdefault(table, ReplicatedTable(table, self.tier))
        done.status, done.error = "failed", error_text(error)

    def replicate(self, table: str) -> None:
        self.replicated[table] = ReplicatedTable(table, self.tier)
        self.chain.start(table)

    def _planned(self, table: str, plan: copy_plan.CopyPlan) -> None:
        self.replicated[table].mode = plan.mode

    def _copied(self, table: str, copied: Copied) -> None:
        if copied.plan.mode == "unchanged":
            return
        done = self.replicated[table]
        done.rows = copied.rows
        if copied.reconciled is not None:
            done.reconciled = reconciled_text(copied.reconciled)
        if copied.swap is not None:
            self.when_done(table, "replication", [copied.swap], lambda fs: self._swapped(table, fs[0]))

    def _swapped(self, table: str, swap_f: PrefectFuture[Any]) -> None:
        if (err := future_error(swap_f)) is not None:
            self.fail(table, "replication", err)


def replicate_tier(
    source: MySQLServer,
    replica: MySQLServer,
    config: TablesConfig,
    tier: int,
    names: list[str],
    full_refresh: bool,
    full_sweep: bool = False,
) -> list[ReplicatedTable]:
    """Replicate the tables of one tier (no load); a failing table never stops the others."""
    run = ReplicationRun(source, replica, config, tier=tier, full_refresh=full_refresh, full_sweep=full_sweep)
    for table in names:
        run.submit([table], "replication", partial(run.replicate, table))
    run.run()
    outcomes = []
    for table in names:
        done = run.replicated.get(table) or ReplicatedTable(table, tier, status="failed", error="no outcome recorded")
        done.seconds = time.time() - run.started.get(table, time.time())
        outcomes.append(done)
    return outcomes
