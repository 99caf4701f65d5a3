"""Thin Prefect tasks around clinicflow.opendental.replication (planning, chunk, swap, incremental run)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.databases import MySQLServer
from clinicflow.core.logs import get_logger
from clinicflow.core.retry import TASK_RETRY
from clinicflow.opendental.chunks import KeyRange
from clinicflow.opendental.replication import copy_plan, replica_copy
from clinicflow.opendental.tables.config import TableConfig

# NO_CACHE: parameters hold credential blocks, which must never be hashed into cache keys or stored.


@task(name="plan-table", cache_policy=NO_CACHE, **TASK_RETRY)
def plan_copy(
    src: MySQLServer, dst: MySQLServer, table: str, config: TableConfig, full_refresh: bool, full_sweep: bool = False
) -> copy_plan.CopyPlan:
    plan = replica_copy.prepare_table(src, dst, table, config, full_refresh=full_refresh, full_sweep=full_sweep)
    log = get_logger()
    if plan.note:
        log.info("%s: %s", table, plan.note)
    if plan.mode != "unchanged":
        log.info(
            "%s: %s copy, %d unit(s)",
            table,
            plan.mode,
            len(replica_copy.full_copy_units(plan)) if plan.mode == "full" else 1,
        )
    return plan


@task(name="copy-chunk", cache_policy=NO_CACHE, task_run_name="copy-{plan.table}-{unit_label}", **TASK_RETRY)
def copy_chunk(
    src: MySQLServer, dst: MySQLServer, plan: copy_plan.CopyPlan, unit: KeyRange | None, unit_label: str
) -> replica_copy.ChunkResult:
    return replica_copy.copy_full_unit(src, dst, plan, unit)


@task(name="swap-in", cache_policy=NO_CACHE, **TASK_RETRY)
def swap_in(dst: MySQLServer, plan: copy_plan.CopyPlan) -> None:
    replica_copy.swap_in(dst, plan)


@task(name="copy-incremental", cache_policy=NO_CACHE, task_run_name="incremental-{plan.table}", **TASK_RETRY)
def copy_incremental(src: MySQLServer, dst: MySQLServer, plan: copy_plan.CopyPlan) -> replica_copy.ChunkResult:
    result = replica_copy.sync_incremental(src, dst, plan)
    if result.reconciled is not None and (result.reconciled.ranges_recopied or result.reconciled.rows_deleted):
        r = result.reconciled
        get_logger().info(
            "%s: reconciled with the source: %d deleted, %d missing copied, %d changed copied "
            "(%d of %d ranges re-read)",
            plan.table,
            r.rows_deleted,
            r.rows_missing,
            r.rows_changed,
            r.ranges_recopied,
            r.ranges,
        )
    return result
