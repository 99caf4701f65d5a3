"""Flow ``replicate_tables``: OpenDental source → replication MySQL, tier by tier.

Wiring only: plan each table, map its chunks (key ranges in parallel, or one
incremental keyset run), swap full copies in, publish a table artifact, and
end Failed if any table failed, after every other table has run.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from blocks.databases import MySQLServer
from blocks.resolve import REPLICATION_BLOCK, SOURCE_BLOCK, resolve_block
from clinicflow.core.logs import get_logger
from clinicflow.opendental.guards import check_replica_is_not_source
from clinicflow.opendental.replication import copy_plan, replica_copy
from clinicflow.opendental.tables.config import ConfigError, TablesConfig, load_tables_config
from tasks import replication as tasks

# Concurrent copies (chunks of one table and tables of one tier share it).
REPLICATION_WORKERS = int(os.environ.get("CLINICFLOW_REPLICATION_WORKERS", "4"))


@dataclass
class TableOutcome:
    table: str
    tier: int
    mode: str = ""
    rows: int = 0
    seconds: float = 0.0
    status: str = "ok"
    error: str = ""
    reconciled: str = ""  # what the reconciliation with the source repaired (incremental tables)

    def row(self) -> dict[str, Any]:
        return {"table": self.table, "tier": self.tier, "mode": self.mode, "rows": self.rows,
                "seconds": round(self.seconds, 2), "status": self.status, "reconciled": self.reconciled,
                "error": self.error}


def _error_text(future: PrefectFuture) -> str:
    try:
        future.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - reported per table, never swallowed silently
        return f"{type(exc).__name__}: {exc}"
    return ""


def warn_dropped_leftovers(names: list[str]) -> None:
    if names:
        get_logger().warning("dropped %d table(s) a killed run left in the replica: %s", len(names), ", ".join(names))


def select_tables(config: TablesConfig, tables: list[str] | None, *, allow_empty: bool = False) -> list[str]:
    """The requested tables, each checked against tables.yml; none at all is an error unless ``allow_empty``."""
    if not tables:
        if not config.tables and not allow_empty:
            raise ConfigError("tables.yml lists no tables: nothing would run (pass --allow-empty / "
                              "allow_empty=True if that is intended)")
        return sorted(config.tables)
    unknown = [t for t in tables if t not in config.tables]
    if unknown:
        raise ConfigError(f"tables not in tables.yml: {', '.join(unknown)}")
    return list(dict.fromkeys(tables))


def run_tier(src: MySQLServer, dst: MySQLServer, config: TablesConfig, tier: int, names: list[str],
             full_refresh: bool, full_sweep: bool = False) -> list[TableOutcome]:
    """Replicate the tables of one tier; a failing table never stops the others."""
    started = {t: time.perf_counter() for t in names}
    outcomes = {t: TableOutcome(t, tier) for t in names}
    plan_futures = {t: tasks.plan_copy.submit(src, dst, t, config.effective(t), full_refresh, full_sweep)
                    for t in names}
    copies: dict[str, list[PrefectFuture]] = {}
    plans: dict[str, copy_plan.CopyPlan] = {}
    for t, fut in plan_futures.items():
        fut.wait()
        if not fut.state.is_completed():
            outcomes[t].status, outcomes[t].error = "failed", _error_text(fut)
            continue
        plan = plans[t] = fut.result()
        outcomes[t].mode = plan.mode
        if plan.mode == "unchanged":
            copies[t] = []  # nothing to copy, nothing to swap
        elif plan.mode == "incremental":
            copies[t] = [tasks.copy_incremental.submit(src, dst, plan)]
        else:
            copies[t] = [tasks.copy_chunk.submit(src, dst, plan, unit, unit.label if unit else "all")
                         for unit in replica_copy.full_copy_units(plan)]
    swaps: dict[str, PrefectFuture] = {}
    for t, futures in copies.items():
        for fut in futures:
            fut.wait()
        failed = [f for f in futures if not f.state.is_completed()]
        if failed:
            outcomes[t].status, outcomes[t].error = "failed", _error_text(failed[0])
            continue
        results = [f.result() for f in futures]
        outcomes[t].rows = sum(r.rows for r in results)
        for r in results:
            if r.reconciled is not None:
                s = r.reconciled
                outcomes[t].reconciled = (f"{s.swept}: {s.rows_deleted} deleted, {s.rows_missing} missing copied, "
                                          f"{s.rows_changed} changed copied, "
                                          f"{s.ranges_recopied}/{s.ranges} ranges re-read")
        if plans[t].mode == "full":
            swaps[t] = tasks.swap_in.submit(dst, plans[t])
    for t, fut in swaps.items():
        fut.wait()
        if not fut.state.is_completed():
            outcomes[t].status, outcomes[t].error = "failed", _error_text(fut)
    for t in names:
        outcomes[t].seconds = time.perf_counter() - started[t]
    return [outcomes[t] for t in names]


def publish_summary(outcomes: list[TableOutcome], key: str, title: str) -> None:
    failed = [o for o in outcomes if o.status != "ok"]
    create_table_artifact(
        key=key,
        table=[o.row() for o in outcomes],
        description=f"{title}: {len(outcomes) - len(failed)} ok, {len(failed)} failed, "
                    f"{sum(o.rows for o in outcomes)} rows",
    )


class TablesFailed(RuntimeError):
    """Raised at the end of a run in which some tables failed."""


def raise_if_failed(outcomes: list[TableOutcome]) -> None:
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        detail = "; ".join(f"{o.table}: {o.error}" for o in failed[:10])
        raise TablesFailed(f"{len(failed)} of {len(outcomes)} tables failed: {detail}")


@flow(name="replicate_tables", task_runner=ThreadPoolTaskRunner(max_workers=REPLICATION_WORKERS), log_prints=True)
def replicate_tables(tables: list[str] | None = None, full_refresh: bool = False, tables_file: str | None = None,
                     full_sweep: bool = False, allow_empty: bool = False) -> list[dict[str, Any]]:
    """Copy the configured tables from the OpenDental source into the replication database.

    Args:
        tables: table names to copy (default: every table in tables.yml).
        full_refresh: copy every chosen table fully, ignoring stored watermarks.
        full_sweep: reconcile every key range of every keyed table with the source tonight.
        tables_file: path of tables.yml (default: the project's, or $CLINICFLOW_TABLES_FILE).
        allow_empty: succeed when tables.yml lists no table (otherwise that is an error).
    """
    log = get_logger()
    try:
        config = load_tables_config(tables_file)
        names = select_tables(config, tables, allow_empty=allow_empty)
        src = resolve_block(SOURCE_BLOCK, MySQLServer)
        dst = resolve_block(REPLICATION_BLOCK, MySQLServer)
        check_replica_is_not_source(src, dst)
    except ConfigError as exc:
        log.error("%s", " ".join(str(exc).split()))  # one clear line before Prefect's traceback
        raise
    log.info("replicating %d tables from %s to %s", len(names), src.describe(), dst.describe())
    copy_plan.ensure_database(dst)
    warn_dropped_leftovers(copy_plan.drop_leftover_tables(dst))
    outcomes: list[TableOutcome] = []
    for tier, tier_names in config.by_tier(names):
        log.info("tier %d: %d tables", tier, len(tier_names))
        outcomes += run_tier(src, dst, config, tier, tier_names, full_refresh, full_sweep)
    publish_summary(outcomes, "replication-summary", "replication")
    for o in outcomes:
        if o.status != "ok":
            log.error("%s: %s", o.table, o.error)
    raise_if_failed(outcomes)
    return [o.row() for o in outcomes]
