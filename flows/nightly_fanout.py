"""Fan-out on the work pool: the child flow ``nightly_tables`` and the parent's side of ``nightly_etl(mode="fanout")``.

Wiring only (partitions, keys, backoff and aggregation are in clinicflow.scaleout.fanout):

- :func:`run_partitions` starts one child deployment run per partition with
  ``run_deployment(..., timeout=0, idempotency_key=<run key>:<partition>)``,
  at most ``width`` at a time, polls them with backoff and returns each
  partition's finished child. Children already started under the same run key
  are kept (completed), waited for (still running) or started again under a
  new attempt key (failed, crashed, cancelled): a rerun redoes only those.
- :func:`fan_out_tiers` runs the nightly's tiers in order, one
  :func:`run_partitions` per tier, and reads every table's outcome back from
  ``clinicflow.etl_table_metrics`` (the children write it there), never from
  Prefect results.
- ``nightly_tables`` (deployment ``nightly-tables``) replicates and loads the
  tables it is given exactly as the in-pod nightly does, holding one slot of
  the global concurrency limit ``clinicflow-fanout`` while it works, records
  each table's metrics under the parent's run id and ends Failed if one failed.
"""
from __future__ import annotations

import os
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from blocks.databases import MySQLServer, PostgresServer
from blocks.resolve import ANALYTICS_BLOCK, REPLICATION_BLOCK, SOURCE_BLOCK, resolve_block
from clinicflow.core.logs import get_logger
from clinicflow.core.retry import TASK_RETRY
from clinicflow.opendental import metrics
from clinicflow.opendental.guards import check_targets
from clinicflow.opendental.metrics import TableOutcome
from clinicflow.opendental.tables.config import TablesConfig, load_tables_config
from clinicflow.scaleout import fanout
from flows.fanout_runner import FANOUT_TAG, read_children, run_partitions, run_tag, start_child  # noqa: F401

CHILD_DEPLOYMENT = os.environ.get("CLINICFLOW_FANOUT_DEPLOYMENT", "nightly-tables/nightly-tables")
CONCURRENCY_LIMIT = os.environ.get("CLINICFLOW_FANOUT_LIMIT", fanout.DEFAULT_CONCURRENCY_LIMIT)
PARTITIONS_ARTIFACT_KEY = "nightly-etl-partitions"
@task(name="read-table-outcomes", cache_policy=NO_CACHE, **TASK_RETRY)
def read_table_outcomes(pg: PostgresServer, run_id: str, tables: list[str]) -> dict[str, TableOutcome]:
    conn = pg.connect()
    try:
        return fanout.recorded_outcomes(conn, run_id, tables)
    finally:
        conn.close()


def fan_out_tiers(config: TablesConfig, names: list[str], pg: PostgresServer, *, run_id: str, run_key: str | None,
                  width: int, child_parameters: dict[str, Any]) -> tuple[list[TableOutcome], str]:
    """Every tier as child runs, lowest tier first; the tables' outcomes and a line naming failed partitions."""
    from clinicflow.opendental.warehouse import steps
    from flows.nightly import SMALL_GROUP_SIZE, SMALL_TABLE_ROWS

    log = get_logger()
    key = run_key or run_id
    outcomes: list[TableOutcome] = []
    reports: list[fanout.PartitionReport] = []
    for parts in fanout.plan_table_partitions(config, names, small_rows=SMALL_TABLE_ROWS,
                                              group_size=SMALL_GROUP_SIZE):
        log.info("tier %d: %d tables in %d child runs", parts[0].tier, sum(len(p.tables) for p in parts), len(parts))
        children = run_partitions(CHILD_DEPLOYMENT, key, {
            p.name: {**child_parameters, "tables": list(p.tables), "run_id": run_id} for p in parts}, width=width)
        recorded = read_table_outcomes(pg, run_id, [t for p in parts for t in p.tables])
        for part in parts:
            report = fanout.report_partition(part, children[part.name],
                                             {t: {"status": o.status, "rows": o.rows} for t, o in recorded.items()})
            reports.append(report)
            outcomes += [recorded.get(t) or steps.failed_outcome(t, report.error, stage="fan-out")
                         for t in part.tables]
    message = fanout.failed_partitions_message(reports)
    create_table_artifact(key=PARTITIONS_ARTIFACT_KEY, table=[r.as_row() for r in reports],
                          description=message or f"{len(reports)} partitions ok")
    return outcomes, message


@task(name="record-tables", cache_policy=NO_CACHE, **TASK_RETRY)
def record_tables(pg: PostgresServer, run_id: str, outcomes: list[TableOutcome]) -> None:
    conn = pg.connect()
    try:
        for outcome in outcomes:
            metrics.record_table(conn, run_id, outcome)
    finally:
        conn.close()


@flow(name="nightly-tables", task_runner=ThreadPoolTaskRunner(
    max_workers=int(os.environ.get("CLINICFLOW_NIGHTLY_WORKERS", "4"))))
def nightly_tables(tables: list[str], run_id: str, full_refresh: bool = False, skip_verification: bool = False,
                   full_sweep: bool = False, tables_file: str | None = None,
                   replicate: bool = True) -> dict[str, Any]:
    """One partition of a fanned-out nightly: replicate and load ``tables`` (child of ``nightly_etl``).

    Args:
        tables: the partition's table names (tables.yml names).
        run_id: the parent's run id; every table's metrics row is recorded under it.
        full_refresh, skip_verification, full_sweep, tables_file: as for ``nightly_etl``.
        replicate: copy from OpenDental first (False: load from the replica only).
    """
    from prefect.concurrency.sync import concurrency

    from flows.nightly import TablesFailed, _options, run_tier_tables
    from flows.replicate import select_tables

    log = get_logger()
    if not tables:  # select_tables would read "none" as "all of tables.yml"
        raise ValueError("nightly_tables: a partition names at least one table")
    pg = resolve_block(ANALYTICS_BLOCK, PostgresServer)
    replica = resolve_block(REPLICATION_BLOCK, MySQLServer)
    source = resolve_block(SOURCE_BLOCK, MySQLServer) if replicate else None
    if source is not None:
        check_targets(source, replica, pg)
    config = load_tables_config(tables_file)
    names = select_tables(config, tables)
    options = _options(full_refresh, skip_verification, full_sweep)
    outcomes: list[TableOutcome] = []
    # A global limit, not a deployment limit: children never sit in AwaitingConcurrencySlot (prefect#16027).
    with concurrency(CONCURRENCY_LIMIT, occupy=1, strict=False, lease_duration=120):
        for tier, tier_names in config.by_tier(names):
            log.info("partition of tier %d: %s", tier, ", ".join(tier_names))
            outcomes += run_tier_tables(config, tier_names, replica, pg, options, source=source,
                                        full_refresh=full_refresh, replicate=replicate)
    record_tables(pg, run_id, outcomes)
    failed = [o for o in outcomes if o.failed]
    if failed:
        raise TablesFailed(f"{len(failed)} of {len(outcomes)} tables failed: "
                           + "; ".join(f"{o.table}: {o.error}" for o in failed[:10]))
    # A small pointer: the results themselves are in PostgreSQL.
    return {"run_id": run_id, "tables": [o.table for o in outcomes], "rows": sum(o.rows for o in outcomes)}
