"""The parent's side of a fanned-out night (``nightly_etl(mode="fanout")``): every tier's partitions as child
runs of the ``nightly-tables`` deployment, lowest tier first (docs/scale-out.md).

Wiring only (partitions and reports are in clinicflow.opendental.fanout, keys in clinicflow.scaleout.fanout): one
:func:`run_partitions` per tier, each child given the night's options whole with its
partition's tables; every table's outcome read back from ``clinicflow.etl_table_metrics``
(the children write it there), never from Prefect results.
"""

from __future__ import annotations

from collections.abc import Collection

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from blocks.databases import PostgresServer
from clinicflow.connectors.connections import connected
from clinicflow.core import settings
from clinicflow.core.logs import get_logger
from clinicflow.core.retry import TASK_RETRY
from clinicflow.opendental import fanout
from clinicflow.opendental.metrics import TableOutcome
from clinicflow.opendental.options import NightlyFanOut, NightlyOptions
from clinicflow.opendental.tables.config import TablesConfig
from clinicflow.opendental.warehouse import load_steps
from flows.fanout_runner import run_partitions

CHILD_DEPLOYMENT = "nightly-tables/nightly-tables"
PARTITIONS_ARTIFACT_KEY = "nightly-etl-partitions"


def child_deployment() -> str:
    """The deployment fan-out children run as (``CLINICFLOW_FANOUT_DEPLOYMENT``, default :data:`CHILD_DEPLOYMENT`)."""
    return settings.fanout_deployment() or CHILD_DEPLOYMENT


@task(name="read-table-outcomes", cache_policy=NO_CACHE, **TASK_RETRY)
def read_table_outcomes(pg: PostgresServer, run_id: str, tables: list[str]) -> dict[str, TableOutcome]:
    with connected(pg) as conn:
        return fanout.recorded_outcomes(conn, run_id, tables)


def fan_out_tiers(
    config: TablesConfig,
    names: list[str],
    pg: PostgresServer,
    *,
    run_id: str,
    options: NightlyOptions,
    fan_out: NightlyFanOut,
    skipped: Collection[str] = (),
) -> tuple[list[TableOutcome], str]:
    """Every tier as child runs, lowest tier first; the tables' outcomes and a line naming failed partitions.

    ``skipped``: tables not to visit tonight (unchanged); partitions are planned over ``names`` first, so
    their names do not depend on them.
    """
    log = get_logger()
    key = fan_out.run_key or run_id
    deployment = child_deployment()
    outcomes: list[TableOutcome] = []
    reports: list[fanout.PartitionReport] = []
    plan = fanout.plan_table_partitions(
        config, names, small_rows=settings.small_table_rows(), group_size=settings.small_group_size()
    )
    for parts in fanout.without_tables(plan, skipped):
        log.info("tier %d: %d tables in %d child runs", parts[0].tier, sum(len(p.tables) for p in parts), len(parts))
        # concurrency_limit None: each child reads its own $CLINICFLOW_FANOUT_LIMIT.
        children = run_partitions(
            deployment,
            key,
            {
                p.name: {
                    "options": options.for_partition(list(p.tables)).model_dump(mode="json"),
                    "run_id": run_id,
                    "concurrency_limit": fan_out.concurrency_limit,
                }
                for p in parts
            },
            width=fan_out.fanout_width,
        )
        recorded = read_table_outcomes(pg, run_id, [t for p in parts for t in p.tables])
        for part in parts:
            report = fanout.report_partition(
                part, children[part.name], {t: {"status": o.status, "rows": o.rows} for t, o in recorded.items()}
            )
            reports.append(report)
            outcomes += [
                recorded.get(t) or load_steps.failed_outcome(t, report.error, stage="fan-out") for t in part.tables
            ]
    message = fanout.failed_partitions_message(reports)
    create_table_artifact(
        key=PARTITIONS_ARTIFACT_KEY,
        table=[r.as_row() for r in reports],
        description=message or f"{len(reports)} partitions ok",
    )
    return outcomes, message
