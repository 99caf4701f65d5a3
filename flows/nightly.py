"""Flows ``nightly_etl`` (replication, then PostgreSQL load, per table) and ``load_tables`` (load only).

Wiring only. The parameters are validated by one options model
(:class:`clinicflow.opendental.options.NightlyOptions`; fan-out: ``NightlyFanOut``) before any work.
Tier by tier (critical tables first), in the tier runner of flows/load_chain.py;
within a tier every table moves through its own chain of tasks, and each step
is submitted the moment the table's previous step finished, never waiting for
the rest of the tier:

    replication: plan → copy chunks (or one incremental run) → swap-in
    load:        prepare-load (submitted with the swap-in future as its
                 dependency) → load chunks (full loads only) → finish-load

Small tables (tables.yml ``estimated_rows`` <= ``CLINICFLOW_SMALL_TABLE_ROWS``)
go in groups: one ``small-tables`` task replicates and loads each of them in
turn (each table retried and recorded on its own).

Concurrency is bounded by the task runner (``CLINICFLOW_NIGHTLY_WORKERS``, read when a run starts).
The blocks are parameters (``source_block``, ``replica_block``, ``analytics_block``): one deployment
per clinic, each naming its clinic's blocks, runs clinics side by side (prefect.yaml).
Retries come from the project's retry policy (transient errors only). At the
end: metrics rows in PostgreSQL (``clinicflow.etl_runs`` and
``clinicflow.etl_table_metrics``), a table artifact summarising the night,
and the flow ends Failed if any table failed, after every other table ran.
With no Prefect API configured, Prefect runs the flow on its embedded server.
"""

from __future__ import annotations

from typing import Any, cast

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.utilities.annotations import quote

from blocks.databases import MySQLServer, PostgresServer
from blocks.resolve import ANALYTICS_BLOCK, REPLICATION_BLOCK, SOURCE_BLOCK, resolve_block
from clinicflow.core import settings
from clinicflow.core.errors import TablesFailed
from clinicflow.core.logs import get_logger
from clinicflow.opendental import catalog_signals
from clinicflow.opendental.guards import check_analytics_is_not_source, check_targets
from clinicflow.opendental.metrics import TableOutcome, night_verdict
from clinicflow.opendental.options import NightlyFanOut, NightlyOptions
from clinicflow.opendental.replication import copy_plan
from clinicflow.opendental.tables.config import TablesConfig, load_tables_config
from clinicflow.opendental.tables.selection import select_tables
from clinicflow.opendental.warehouse import load_steps
from flows.chains import env_sized_task_runner
from flows.load_chain import run_tier_tables
from flows.options_params import options_parameters, source_version
from flows.replication_chain import warn_dropped_leftovers
from flows.runtime import flow_run_id
from flows.tier_fanout import fan_out_tiers
from tasks import load as load_tasks

__all__ = ["TablesFailed", "load_tables", "nightly_etl", "start_failure_message"]

ARTIFACT_KEY = "nightly-etl"
_DEFAULT_BLOCKS = {"source_block": SOURCE_BLOCK, "replica_block": REPLICATION_BLOCK, "analytics_block": ANALYTICS_BLOCK}


# What a run's row in clinicflow.etl_runs shows of its options (the blocks only when they are a clinic's own).
_RUN_ROW_FIELDS = {"tables", "full_refresh", "skip_verification", "full_sweep", "allow_empty"}


def _run(
    flow_name: str, options: NightlyOptions, *, replicate: bool, fan_out: NightlyFanOut | None = None
) -> list[dict[str, Any]]:
    from prefect.runtime import flow_run

    log = get_logger()
    run_id = (fan_out.run_key if fan_out is not None else None) or flow_run_id()
    parameters: dict[str, Any] = options.model_dump(include=_RUN_ROW_FIELDS)
    blocks = options.blocks()
    if any(blocks[k] != default for k, default in _DEFAULT_BLOCKS.items()):
        parameters = {**parameters, **blocks}  # a clinic's own blocks show in its run row
    # The run row first: whatever fails before the first table (tables.yml, a block, a connection, a
    # refused configuration) is recorded as this run's failure, so `status` never shows the last good night.
    pg = resolve_block(blocks["analytics_block"], PostgresServer)
    source = _source_block(blocks["source_block"]) if replicate else None
    if source is not None:
        check_analytics_is_not_source(source, pg)  # before the run row: "analytics" would be the source
    started = False
    try:
        load_tasks.open_run(pg, run_id, flow_name, str(flow_run.get_id() or ""), parameters)
        started = True
        config = load_tables_config(options.tables_file)
        names = select_tables(config, options.tables, allow_empty=options.allow_empty)
        if replicate and source is None:
            source = resolve_block(blocks["source_block"], MySQLServer)
        replica = resolve_block(blocks["replica_block"], MySQLServer)
        if source is not None:
            check_targets(source, replica, pg)
        load_options = options.load_options()
        log.info("%s: %d tables, replica %s, analytics %s", flow_name, len(names), replica.describe(), pg.describe())
        if source is not None:  # replicating: the source was resolved above
            copy_plan.ensure_database(replica)
            warn_dropped_leftovers(copy_plan.drop_leftover_tables(replica))
            _record_drift(source, config, log)
        load_tasks.setup_target(pg, load_options, run_id, flow_name, str(flow_run.get_id() or ""), parameters)
    except Exception as exc:
        log.error("%s: %s", flow_name, start_failure_message(exc))  # one clear line before Prefect's traceback
        if started:
            try:
                load_tasks.fail_start(pg, run_id, flow_name, start_failure_message(exc))
            except Exception as record_exc:  # noqa: BLE001 - the start's own error is the one to raise
                log.error("could not record the failed start: %s: %s", type(record_exc).__name__, record_exc)
        raise

    outcomes: list[TableOutcome] = []
    signals = _night_signals(source, replica, pg, config, names, load_options) if replicate else None
    if signals is not None and signals.unchanged:
        quiet = sorted(signals.unchanged & set(names))
        log.info(
            "%d of %d tables unchanged on both servers since the last good night (catalog): not visited: %s",
            len(quiet),
            len(names),
            ", ".join(quiet[:20]) + (f" and {len(quiet) - 20} more" if len(quiet) > 20 else ""),
        )
        outcomes = [catalog_signals.unchanged_outcome(t) for t in names if t in signals.unchanged]
    unchanged = signals.unchanged if signals is not None else set()
    partitions_failed = ""
    if fan_out is not None:
        found, partitions_failed = fan_out_tiers(
            config, names, pg, run_id=run_id, options=options, fan_out=fan_out, skipped=unchanged
        )
        outcomes += found
    else:
        for tier, tier_names in config.by_tier([t for t in names if t not in unchanged]):
            log.info("tier %d: %d tables", tier, len(tier_names))
            outcomes += run_tier_tables(config, tier_names, replica, pg, load_options, source=source, tier=tier)

    if signals is not None:
        try:
            signals.record(outcomes)
        except Exception as exc:  # noqa: BLE001 - the next night then visits every table: slower, never wrong
            log.warning("catalog signals not stored: %s: %s", type(exc).__name__, exc)
    verdict = night_verdict(flow_name, outcomes, partitions_failed)
    rows = [o.as_row() for o in outcomes]  # the artifact's rows and the flow's return value
    create_table_artifact(key=ARTIFACT_KEY, table=rows, description=verdict.summary)
    # A child run lost after its tables committed still fails the night: the rerun retries that partition.
    # quote: Prefect would otherwise walk every field of every outcome looking for futures (450 tables: the
    # largest part of a no-op night's flow time, bench/results/loading-history.md).
    quoted = cast(list[TableOutcome], quote(outcomes))  # Prefect unwraps quote() before the task runs
    load_tasks.record_run(pg, run_id, quoted, verdict.summary, other_failure=verdict.failed)
    for outcome in outcomes:
        if outcome.failed:
            log.error("%s: %s", outcome.table, outcome.error)
    if verdict.failure is not None:
        raise TablesFailed(verdict.failure)
    log.info(verdict.summary)
    return rows


def _night_signals(
    source: MySQLServer | None,
    replica: MySQLServer,
    pg: PostgresServer,
    config: TablesConfig,
    names: list[str],
    options: load_steps.LoadOptions,
) -> catalog_signals.NightSignals | None:
    """Tonight's catalog signals (docs/loading.md), or None when every table must be visited."""
    if source is None or options.full_refresh or options.full_sweep or not options.verify:
        return None
    try:
        return catalog_signals.NightSignals(
            source, replica, pg, {t: config.effective(t) for t in names}, options.state_schema, options.raw_schema
        )
    except Exception as exc:  # noqa: BLE001 - without signals every table runs its full per-table work
        get_logger().warning("catalog signals not read, every table is visited: %s: %s", type(exc).__name__, exc)
        return None


def _source_block(name: str) -> MySQLServer | None:
    """The source block, or None when it cannot be resolved yet (resolved again, and recorded, in the run)."""
    try:
        return resolve_block(name, MySQLServer)
    except Exception:  # noqa: BLE001 - raised again inside the recorded start
        return None


def start_failure_message(exc: BaseException) -> str:
    """The one line recorded for a run that failed before its tables ran (messages never hold passwords)."""
    from clinicflow.opendental.tables.config import ConfigError

    text = " ".join(str(exc).split())
    return text if isinstance(exc, ConfigError) else f"could not start: {type(exc).__name__}: {text}"


def _record_drift(source: MySQLServer, config: TablesConfig, log: Any) -> None:
    """Compare tables.yml with the live source first and record any drift (it does not stop the night)."""
    from clinicflow.opendental.tables.config_drift import check_drift

    try:
        report = check_drift(source, config)
    except Exception as exc:  # noqa: BLE001 - an unreachable source fails each table below, with its reason
        log.warning("drift check could not run: %s: %s", type(exc).__name__, exc)
        return
    create_table_artifact(
        key="nightly-schema-drift", table=report.to_rows() or [{"drift": "none"}], description=report.summary()
    )
    if report.has_drift:
        log.warning("schema drift against tables.yml: %s", report.summary())


# Task-runner threads: $CLINICFLOW_NIGHTLY_WORKERS, read when a run starts (EnvSizedTaskRunner).
@flow(name="nightly-etl", task_runner=env_sized_task_runner(settings.nightly_workers), version=source_version(__file__))
@options_parameters(source_block=SOURCE_BLOCK, replica_block=REPLICATION_BLOCK, analytics_block=ANALYTICS_BLOCK)
def nightly_etl(options: NightlyOptions, fan_out: NightlyFanOut) -> list[dict[str, Any]]:
    """Replicate each table from OpenDental into the replication MySQL, then load it into PostgreSQL ``raw``.

    Args:
        tables: table names (default: every table in tables.yml).
        full_refresh: copy and load every chosen table fully, ignoring watermarks (accepts new column types).
        skip_verification: do not compare raw with the replica after loading.
        full_sweep: reconcile every key range of every keyed table tonight (keys and row checksums), even
            where tables.yml turns reconciliation off or checksums a rolling slice; a full load's verification
            then compares every value too.
        tables_file: path of tables.yml (default: the project's, or $CLINICFLOW_TABLES_FILE).
        allow_empty: succeed when tables.yml lists no table (otherwise that is an error).
        mode: "in-pod" (every table in this run's task runner) or "fanout" (each tier's tables, or groups of
            small tables, as child runs of the nightly-tables deployment; docs/scale-out.md).
        run_key: fan-out only: the night's key (default: this flow run's id). A rerun with the same key keeps
            the partitions that completed and starts only the failed ones again.
        fanout_width: fan-out only: child runs started at a time.
        source_block, replica_block, analytics_block: names of the clinic's blocks (default: the well-known
            names of blocks/resolve.py); one parameter set per clinic runs clinics side by side.
        concurrency_limit: fan-out only: the global concurrency limit the children hold a slot of (default:
            $CLINICFLOW_FANOUT_LIMIT or ``clinicflow-fanout``); one per clinic.
    """
    return _run("nightly_etl", options, replicate=True, fan_out=fan_out if fan_out.fans_out else None)


@flow(name="load-tables", task_runner=env_sized_task_runner(settings.nightly_workers), version=source_version(__file__))
@options_parameters(
    fixed={"source_block": SOURCE_BLOCK}, replica_block=REPLICATION_BLOCK, analytics_block=ANALYTICS_BLOCK
)
def load_tables(options: NightlyOptions) -> list[dict[str, Any]]:
    """Load tables from the replication MySQL into PostgreSQL ``raw`` (no replication step). Same parameters."""
    return _run("load_tables", options, replicate=False)
