"""Flow ``replicate_tables``: OpenDental source → replication MySQL, tier by tier.

Wiring only: each table's replication chain (plan → copy chunks or one
incremental run → swap-in) runs in the replication chain (flows/replication_chain.py),
then a table artifact, and the flow ends Failed if any table failed, after
every other table has run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from blocks.databases import MySQLServer
from blocks.resolve import REPLICATION_BLOCK, SOURCE_BLOCK, resolve_block
from clinicflow.core import settings
from clinicflow.core.errors import TablesFailed
from clinicflow.core.logs import get_logger
from clinicflow.core.verdicts import failed_of
from clinicflow.opendental.guards import check_replica_is_not_source
from clinicflow.opendental.replication import copy_plan
from clinicflow.opendental.tables.config import ConfigError, load_tables_config
from clinicflow.opendental.tables.selection import select_tables
from flows.chains import env_sized_task_runner
from flows.replication_chain import ReplicatedTable, replicate_tier, warn_dropped_leftovers

__all__ = ["TablesFailed", "publish_summary", "raise_if_failed", "replicate_tables"]


def publish_summary(outcomes: list[ReplicatedTable], key: str, title: str) -> None:
    failed = [o for o in outcomes if o.status != "ok"]
    create_table_artifact(
        key=key,
        table=[o.row() for o in outcomes],
        description=f"{title}: {len(outcomes) - len(failed)} ok, {len(failed)} failed, "
        f"{sum(o.rows for o in outcomes)} rows",
    )


def raise_if_failed(outcomes: list[ReplicatedTable]) -> None:
    failure = failed_of([f"{o.table}: {o.error}" for o in outcomes if o.status != "ok"], len(outcomes), "tables")
    if failure is not None:
        raise TablesFailed(failure)


# Concurrent copies (chunks of one table and tables of one tier share them): $CLINICFLOW_REPLICATION_WORKERS,
# read when a run starts.
@flow(name="replicate_tables", task_runner=env_sized_task_runner(settings.replication_workers), log_prints=True)
def replicate_tables(
    tables: list[str] | None = None,
    full_refresh: bool = False,
    tables_file: str | None = None,
    full_sweep: bool = False,
    allow_empty: bool = False,
    source_block: str = SOURCE_BLOCK,
    replica_block: str = REPLICATION_BLOCK,
) -> list[dict[str, Any]]:
    """Copy the configured tables from the OpenDental source into the replication database.

    Args:
        tables: table names to copy (default: every table in tables.yml).
        full_refresh: copy every chosen table fully, ignoring stored watermarks.
        full_sweep: reconcile every key range of every keyed table with the source tonight.
        tables_file: path of tables.yml (default: the project's, or $CLINICFLOW_TABLES_FILE).
        allow_empty: succeed when tables.yml lists no table (otherwise that is an error).
        source_block, replica_block: names of the clinic's source and replication MySQL blocks.
    """
    log = get_logger()
    try:
        config = load_tables_config(tables_file)
        names = select_tables(config, tables, allow_empty=allow_empty)
        src = resolve_block(source_block, MySQLServer)
        dst = resolve_block(replica_block, MySQLServer)
        check_replica_is_not_source(src, dst)
    except ConfigError as exc:
        log.error("%s", " ".join(str(exc).split()))  # one clear line before Prefect's traceback
        raise
    log.info("replicating %d tables from %s to %s", len(names), src.describe(), dst.describe())
    copy_plan.ensure_database(dst)
    warn_dropped_leftovers(copy_plan.drop_leftover_tables(dst))
    outcomes: list[ReplicatedTable] = []
    for tier, tier_names in config.by_tier(names):
        log.info("tier %d: %d tables", tier, len(tier_names))
        outcomes += replicate_tier(src, dst, config, tier, tier_names, full_refresh, full_sweep)
    publish_summary(outcomes, "replication-summary", "replication")
    for o in outcomes:
        if o.status != "ok":
            log.error("%s: %s", o.table, o.error)
    raise_if_failed(outcomes)
    return [o.row() for o in outcomes]
