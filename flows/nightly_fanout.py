"""Fan-out on the work pool: the child flow ``nightly_tables`` and the parent's side of ``nightly_etl(mode="fanout")``.

Wiring only (partitions and reports in clinicflow.opendental.fanout; keys and backoff in clinicflow.scaleout.fanout):

- :func:`run_partitions` (flows/fanout_runner.py) starts one child deployment
  run per partition under an idempotency key, at most ``width`` at a time, and
  returns each partition's finished child; a rerun redoes only the failed ones.
- :func:`fan_out_tiers` (flows/tier_fanout.py) runs the nightly's tiers in order, one
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
from blocks.resolve import resolve_block
from clinicflow.connectors.connections import connected
from clinicflow.core import settings
from clinicflow.core.errors import TablesFailed
from clinicflow.core.logs import get_logger
from clinicflow.core.retry import TASK_RETRY
from clinicflow.opendental import metrics
from clinicflow.opendental.guards import check_targets
from clinicflow.opendental.metrics import TableOutcome, tables_failed_message
from clinicflow.opendental.options import NightlyOptions
from clinicflow.opendental.tables.config import load_tables_config
from clinicflow.opendental.tables.selection import select_tables
from flows.chains import env_sized_task_runner
from flows.fanout_runner import FANOUT_TAG, child_slot, read_children, run_partitions, run_tag, start_child
from flows.load_chain import run_tier_tables
from flows.tier_fanout import CHILD_DEPLOYMENT, PARTITIONS_ARTIFACT_KEY, child_deployment, fan_out_tiers

# The parent's side lives in flows/tier_fanout.py and flows/fanout_runner.py; these names stay importable from here.
__all__ = [
    "CHILD_DEPLOYMENT",
    "FANOUT_TAG",
    "PARTITIONS_ARTIFACT_KEY",
    "child_deployment",
    "fan_out_tiers",
    "nightly_tables",
    "read_children",
    "record_tables",
    "run_partitions",
    "run_tag",
    "start_child",
]


@task(name="record-tables", cache_policy=NO_CACHE, **TASK_RETRY)
def record_tables(pg: PostgresServer, run_id: str, outcomes: list[TableOutcome]) -> None:
    with connected(pg) as conn:
        for outcome in outcomes:
            metrics.record_table(conn, run_id, outcome)


# Task-runner threads: $CLINICFLOW_NIGHTLY_WORKERS, read when a run starts.
@flow(name="nightly-tables", task_runner=env_sized_task_runner(settings.nightly_workers))
def nightly_tables(
    options: NightlyOptions, run_id: str, replicate: bool = True, concurrency_limit: str | None = None
) -> dict[str, Any]:
    """One partition of a fanned-out nightly: replicate and load ``options.tables`` (child of ``nightly_etl``).

    Args:
        options: the night's options (clinicflow.opendental.options.NightlyOptions), whole, with the
            partition's table names (tables.yml names) in ``tables``.
        run_id: the parent's run id; every table's metrics row is recorded under it.
        replicate: copy from OpenDental first (False: load from the replica only).
        concurrency_limit: the global concurrency limit to hold a slot of (default: $CLINICFLOW_FANOUT_LIMIT or
            ``clinicflow-fanout``); one per clinic keeps each clinic's width its own.
    """
    options = NightlyOptions.model_validate(options)  # a dict when called without Prefect's validation
    log = get_logger()
    if not options.tables:  # select_tables would read "none" as "all of tables.yml"
        raise ValueError("nightly_tables: a partition names at least one table")
    pg = resolve_block(options.analytics_block, PostgresServer)
    replica = resolve_block(options.replica_block, MySQLServer)
    source = resolve_block(options.source_block, MySQLServer) if replicate else None
    if source is not None:
        check_targets(source, replica, pg)
    config = load_tables_config(options.tables_file)
    names = select_tables(config, options.tables)
    outcomes: list[TableOutcome] = []
    with child_slot(concurrency_limit):
        for tier, tier_names in config.by_tier(names):
            log.info("partition of tier %d: %s", tier, ", ".join(tier_names))
            outcomes += run_tier_tables(
                config, tier_names, replica, pg, options.load_options(), source=source, tier=tier
            )
    record_tables(pg, run_id, outcomes)
    failure = tables_failed_message(outcomes)
    if failure is not None:
        raise TablesFailed(failure)
    # A small pointer: the results themselves are in PostgreSQL.
    return {"run_id": run_id, "tables": [o.table for o in outcomes], "rows": sum(o.rows for o in outcomes)}
