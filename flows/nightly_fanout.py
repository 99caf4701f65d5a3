"""Fan-out on the work pool: the child flow ``nightly_tables`` and the parent's side of ``nightly_etl(mode="fanout")``.

Wiring only (partitions, keys, backoff and aggregation are in clinicflow.scaleout.fanout):

- :func:`run_partitions` (flows/fanout_runner.py) starts one child deployment
  run per partition under an idempotency key, at most ``width`` at a time, and
  returns each partition's finished child; a rerun redoes only the failed ones.
- :func:`fan_out_tiers` (flows/tiers.py) runs the nightly's tiers in order, one
  :func:`run_partitions` per tier, and reads every table's outcome back from
  ``clinicflow.etl_table_metrics`` (the children write it there), never from
  Prefect results.
- ``nightly_tables`` (deployment ``nightly-tables``) replicates and loads the
  tables it is given exactly as the in-pod nightly does, holding one slot of
  the global concurrency limit ``clinicflow-fanout`` (or the clinic's, parameter
  ``concurrency_limit``) while it works, records
  each table's metrics under the parent's run id and ends Failed if one failed.
"""
from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from blocks.databases import MySQLServer, PostgresServer
from blocks.resolve import ANALYTICS_BLOCK, REPLICATION_BLOCK, SOURCE_BLOCK, resolve_block
from clinicflow.core.errors import TablesFailed
from clinicflow.core.logs import get_logger
from clinicflow.core.retry import TASK_RETRY
from clinicflow.opendental import metrics
from clinicflow.opendental.guards import check_targets
from clinicflow.opendental.metrics import TableOutcome, tables_failed_message
from clinicflow.opendental.tables.config import load_tables_config
from flows.fanout_runner import FANOUT_TAG, read_children, run_partitions, run_tag, start_child
from flows.tiers import (
    CHILD_DEPLOYMENT,
    PARTITIONS_ARTIFACT_KEY,
    child_deployment,
    env_sized_task_runner,
    fan_out_tiers,
    fanout_concurrency_limit,
    load_options,
    nightly_workers,
    run_tier_tables,
    select_tables,
)

# The parent's side lives in flows/tiers.py and flows/fanout_runner.py; these names stay importable from here.
__all__ = ["CHILD_DEPLOYMENT", "FANOUT_TAG", "PARTITIONS_ARTIFACT_KEY", "child_deployment", "fan_out_tiers",
           "nightly_tables", "read_children", "record_tables", "run_partitions", "run_tag", "start_child"]


@task(name="record-tables", cache_policy=NO_CACHE, **TASK_RETRY)
def record_tables(pg: PostgresServer, run_id: str, outcomes: list[TableOutcome]) -> None:
    conn = pg.connect()
    try:
        for outcome in outcomes:
            metrics.record_table(conn, run_id, outcome)
    finally:
        conn.close()


# Task-runner threads: $CLINICFLOW_NIGHTLY_WORKERS, read when a run starts.
@flow(name="nightly-tables", task_runner=env_sized_task_runner(nightly_workers))
def nightly_tables(tables: list[str], run_id: str, full_refresh: bool = False, skip_verification: bool = False,
                   full_sweep: bool = False, tables_file: str | None = None,
                   replicate: bool = True, source_block: str = SOURCE_BLOCK, replica_block: str = REPLICATION_BLOCK,
                   analytics_block: str = ANALYTICS_BLOCK, concurrency_limit: str | None = None) -> dict[str, Any]:
    """One partition of a fanned-out nightly: replicate and load ``tables`` (child of ``nightly_etl``).

    Args:
        tables: the partition's table names (tables.yml names).
        run_id: the parent's run id; every table's metrics row is recorded under it.
        full_refresh, skip_verification, full_sweep, tables_file: as for ``nightly_etl``.
        replicate: copy from OpenDental first (False: load from the replica only).
        source_block, replica_block, analytics_block: the clinic's blocks (the parent passes its own).
        concurrency_limit: the global concurrency limit to hold a slot of (default: $CLINICFLOW_FANOUT_LIMIT or
            ``clinicflow-fanout``); one per clinic keeps each clinic's width its own.
    """
    from prefect.concurrency.sync import concurrency

    log = get_logger()
    if not tables:  # select_tables would read "none" as "all of tables.yml"
        raise ValueError("nightly_tables: a partition names at least one table")
    pg = resolve_block(analytics_block, PostgresServer)
    replica = resolve_block(replica_block, MySQLServer)
    source = resolve_block(source_block, MySQLServer) if replicate else None
    if source is not None:
        check_targets(source, replica, pg)
    config = load_tables_config(tables_file)
    names = select_tables(config, tables)
    options = load_options(full_refresh, skip_verification, full_sweep)
    outcomes: list[TableOutcome] = []
    # A global limit, not a deployment limit: children never sit in AwaitingConcurrencySlot (prefect#16027).
    with concurrency(concurrency_limit or fanout_concurrency_limit(), occupy=1, strict=False, lease_duration=120):
        for tier, tier_names in config.by_tier(names):
            log.info("partition of tier %d: %s", tier, ", ".join(tier_names))
            outcomes += run_tier_tables(config, tier_names, replica, pg, options, source=source,
                                        full_refresh=full_refresh, replicate=replicate)
    record_tables(pg, run_id, outcomes)
    failure = tables_failed_message(outcomes)
    if failure is not None:
        raise TablesFailed(failure)
    # A small pointer: the results themselves are in PostgreSQL.
    return {"run_id": run_id, "tables": [o.table for o in outcomes], "rows": sum(o.rows for o in outcomes)}
