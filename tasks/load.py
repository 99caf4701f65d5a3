"""Thin Prefect tasks around the PostgreSQL load (opendental.warehouse.load_steps) and the run metrics."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.connections import connected
from clinicflow.core.retry import TASK_RETRY
from clinicflow.opendental import metrics, small_tables
from clinicflow.opendental.tables.config import TableConfig
from clinicflow.opendental.warehouse import full_load, load_steps
from clinicflow.opendental.warehouse.copy_stream import CopyStats

# NO_CACHE: parameters hold credential blocks, which must never be hashed into cache keys or stored.


@task(name="setup-target", cache_policy=NO_CACHE, **TASK_RETRY)
def setup_target(
    pg: PostgresServer,
    options: load_steps.LoadOptions,
    run_id: str,
    flow_name: str,
    flow_run_id: str | None,
    parameters: dict[str, Any],
) -> None:
    load_steps.setup_target(pg, options)
    _start_run(pg, run_id, flow_name, flow_run_id, parameters)


@task(name="open-run", cache_policy=NO_CACHE, **TASK_RETRY)
def open_run(
    pg: PostgresServer, run_id: str, flow_name: str, flow_run_id: str | None, parameters: dict[str, Any]
) -> None:
    _start_run(pg, run_id, flow_name, flow_run_id, parameters)


def _start_run(
    pg: PostgresServer, run_id: str, flow_name: str, flow_run_id: str | None, parameters: dict[str, Any]
) -> None:
    with connected(pg) as conn:
        metrics.ensure_metrics_tables(conn)
        metrics.start_run(conn, run_id, flow_name, flow_run_id=flow_run_id, parameters=parameters)


@task(name="fail-start", cache_policy=NO_CACHE, **TASK_RETRY)
def fail_start(pg: PostgresServer, run_id: str, flow_name: str, message: str) -> None:
    with connected(pg) as conn:
        metrics.record_failed_start(conn, run_id, flow_name, message)


@task(name="prepare-load", cache_policy=NO_CACHE, task_run_name="load-{table}", **TASK_RETRY)
def prepare_load(
    replica: MySQLServer,
    pg: PostgresServer,
    table: str,
    config: TableConfig,
    options: load_steps.LoadOptions,
    replication: dict[str, Any] | None = None,
) -> load_steps.FullLoad | metrics.TableOutcome:
    return load_steps.prepare_load(replica, pg, table, config, options, replication=replication)


@task(name="load-chunk", cache_policy=NO_CACHE, task_run_name="load-{load.plan.table}-{chunk.label}", **TASK_RETRY)
def load_chunk(
    replica: MySQLServer, pg: PostgresServer, load: load_steps.FullLoad, chunk: full_load.Chunk
) -> CopyStats:
    return load_steps.load_chunk(replica, pg, load, chunk)


@task(name="finish-load", cache_policy=NO_CACHE, task_run_name="swap-{load.plan.table}", **TASK_RETRY)
def finish_load(
    replica: MySQLServer, pg: PostgresServer, load: load_steps.FullLoad, chunk_stats: list[CopyStats]
) -> metrics.TableOutcome:
    return load_steps.finish_load(replica, pg, load, chunk_stats)


@task(name="drop-stage", cache_policy=NO_CACHE, **TASK_RETRY)
def drop_stage(pg: PostgresServer, load: load_steps.FullLoad) -> None:
    load_steps.drop_stage(pg, load)


@task(name="record-run", cache_policy=NO_CACHE, **TASK_RETRY)
def record_run(
    pg: PostgresServer, run_id: str, outcomes: list[metrics.TableOutcome], message: str, other_failure: bool = False
) -> str:
    with connected(pg) as conn:
        metrics.record_tables(conn, run_id, outcomes)
        return metrics.finish_run(conn, run_id, outcomes, message=message, other_failure=other_failure)


@task(name="small-tables", cache_policy=NO_CACHE, task_run_name="small-tables-{label}")
def small_table_group(
    source: MySQLServer | None,
    replica: MySQLServer,
    pg: PostgresServer,
    configs: dict[str, TableConfig],
    options: load_steps.LoadOptions,
    label: str,
) -> list[metrics.TableOutcome]:
    # No task-level retries: each table's steps retry inside, and a failed table never fails the group.
    return small_tables.replicate_and_load_small(source, replica, pg, configs, options, replicate=source is not None)
