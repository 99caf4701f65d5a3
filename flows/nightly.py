"""Flows ``nightly_etl`` (replication, then PostgreSQL load, per table) and ``load_tables`` (load only).

Wiring only. Tier by tier (critical tables first); within a tier every table
moves through its own chain of tasks, and each step is submitted the moment
the table's previous step finished, never waiting for the rest of the tier:

    replication: plan → copy chunks (or one incremental run) → swap-in
    load:        prepare-load (submitted with the swap-in future as its
                 dependency) → load chunks (full loads only) → finish-load

Small tables (tables.yml ``estimated_rows`` <= ``CLINICFLOW_SMALL_TABLE_ROWS``)
go in groups: one ``small-tables`` task replicates and loads each of them in
turn (each table retried and recorded on its own).

Concurrency is bounded by the task runner (``CLINICFLOW_NIGHTLY_WORKERS``).
Retries come from the project's retry policy (transient errors only). At the
end: metrics rows in PostgreSQL (``clinicflow.etl_runs`` and
``clinicflow.etl_table_metrics``), a table artifact summarising the night,
and the flow ends Failed if any table failed, after every other table ran.
With no Prefect API configured, Prefect runs the flow on its embedded server.
"""
from __future__ import annotations

import os
import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from blocks.databases import MySQLServer, PostgresServer
from blocks.resolve import ANALYTICS_BLOCK, REPLICATION_BLOCK, SOURCE_BLOCK, resolve_block
from clinicflow.core.logs import get_logger
from clinicflow.opendental.guards import check_analytics_is_not_source, check_targets
from clinicflow.opendental.metrics import TableOutcome
from clinicflow.opendental.replication import copy_plan, replica_copy
from clinicflow.opendental.tables.config import TablesConfig, load_tables_config
from clinicflow.opendental.warehouse import load_steps
from flows.replicate import select_tables, warn_dropped_leftovers
from tasks import load as load_tasks
from tasks import replication as repl_tasks

NIGHTLY_WORKERS = int(os.environ.get("CLINICFLOW_NIGHTLY_WORKERS", "4"))
ARTIFACT_KEY = "nightly-etl"
# Tables estimated (tables.yml estimated_rows) at or below this many rows are
# replicated and loaded in groups, one task per group: for them a task run per
# step costs more than the copy (450-table no-op bench, docs/loading.md).
SMALL_TABLE_ROWS = int(os.environ.get("CLINICFLOW_SMALL_TABLE_ROWS", "1000"))
SMALL_GROUP_SIZE = int(os.environ.get("CLINICFLOW_SMALL_GROUP_SIZE", "25"))


class TablesFailed(RuntimeError):
    """Raised at the end of a run in which some tables failed (the flow run ends Failed)."""


class _Chains:
    """Runs continuations in the flow thread as groups of futures finish (no polling, no tier barrier)."""

    def __init__(self) -> None:
        self._done: queue.Queue[dict[str, Any]] = queue.Queue()
        self._open = 0

    def when_done(self, futures: list[PrefectFuture], then: Callable[[list[PrefectFuture]], None]) -> None:
        group = {"left": len(futures), "futures": futures, "then": then}
        self._open += 1
        if not futures:
            self._done.put(group)
            group["left"] = 1
            return
        for future in futures:
            future.add_done_callback(lambda _f, g=group: self._done.put(g))

    def run(self) -> None:
        while self._open:
            group = self._done.get()
            group["left"] -= 1
            if group["left"] > 0:
                continue
            self._open -= 1
            for future in group["futures"]:
                future.wait()
            group["then"](group["futures"])


def _error(future: PrefectFuture) -> BaseException | str | None:
    """The exception of a future that did not complete, or None."""
    state = future.state
    if state.is_completed():
        return None
    try:
        future.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - reported per table
        return exc
    return f"{state.name}: {state.message or 'did not complete'}"


class _TierRun:
    """The task chains of one tier; fills ``outcomes`` (one per table)."""

    def __init__(self, config: TablesConfig, replica: MySQLServer, pg: PostgresServer,
                 options: load_steps.LoadOptions, *, source: MySQLServer | None, full_refresh: bool) -> None:
        self.config, self.replica, self.pg, self.options = config, replica, pg, options
        self.source, self.full_refresh = source, full_refresh
        self.outcomes: dict[str, TableOutcome] = {}
        self.chains = _Chains()
        self.started: dict[str, float] = {}

    def fail(self, table: str, stage: str, error: BaseException | str, replication_info: dict | None = None) -> None:
        self.outcomes[table] = load_steps.failed_outcome(table, error, stage=stage, started=self.started.get(table),
                                                         replication=replication_info)

    def _guarded(self, tables: list[str], stage: str,
                 then: Callable[[list[PrefectFuture]], None]) -> Callable[[list[PrefectFuture]], None]:
        """``then``, but an exception in it fails only ``tables`` (recorded), never the flow thread and the run."""
        def run(futures: list[PrefectFuture]) -> None:
            try:
                then(futures)
            except Exception as exc:  # noqa: BLE001 - recorded for these tables; the others go on
                for table in tables:
                    self.fail(table, stage, exc)
        return run

    def submit(self, tables: list[str], stage: str, start: Callable[[], None]) -> None:
        """Start a table's (or group's) chain; a failure to start fails those tables only."""
        self._guarded(tables, stage, lambda _futures: start())([])

    def when_done(self, table: str | list[str], stage: str, futures: list[PrefectFuture],
                  then: Callable[[list[PrefectFuture]], None]) -> None:
        tables = [table] if isinstance(table, str) else table
        self.chains.when_done(futures, self._guarded(tables, stage, then))

    # --- replication (the replication helper's tasks) ---------------------
    def replicate(self, table: str) -> None:
        self.started[table] = time.time()
        assert self.source is not None
        plan_f = repl_tasks.plan_copy.submit(self.source, self.replica, table, self.config.effective(table),
                                              self.full_refresh, self.options.full_sweep)
        self.when_done(table, "replication", [plan_f], lambda fs: self._copy(table, fs[0]))

    def _copy(self, table: str, plan_f: PrefectFuture) -> None:
        if (err := _error(plan_f)) is not None:
            return self.fail(table, "replication", err)
        plan = plan_f.result()
        if plan.mode == "unchanged":
            return self.load(table, {"rows": 0, "seconds": time.time() - self.started[table]}, depends_on=None)
        if plan.mode == "incremental":
            copies = [repl_tasks.copy_incremental.submit(self.source, self.replica, plan)]
        else:
            copies = [repl_tasks.copy_chunk.submit(self.source, self.replica, plan, unit,
                                                   unit.label if unit else "all")
                      for unit in replica_copy.full_copy_units(plan)]
        self.when_done(table, "replication", copies, lambda fs: self._swap(table, plan, fs))

    def _swap(self, table: str, plan: copy_plan.CopyPlan, copies: list[PrefectFuture]) -> None:
        for copy in copies:
            if (err := _error(copy)) is not None:
                return self.fail(table, "replication", err)
        results = [c.result() for c in copies]
        info = {"rows": sum(r.rows for r in results), "seconds": time.time() - self.started[table],
                "reconciled": next((r.reconciled for r in results if r.reconciled is not None), None)}
        swap = repl_tasks.swap_in.submit(self.replica, plan) if plan.mode == "full" else None
        # The load is submitted now, with the replication's last step as its dependency.
        self.load(table, info, depends_on=swap)

    # --- small tables: replication and load together, in groups ---------------
    def small_group(self, tables: list[str], replicate: bool) -> None:
        for table in tables:
            self.started[table] = time.time()
        configs = {t: self.config.effective(t) for t in tables}
        label = f"{tables[0]}..{tables[-1]}" if len(tables) > 1 else tables[0]
        group_f = load_tasks.small_table_group.submit(self.source if replicate else None, self.replica, self.pg,
                                                      configs, self.options, label)
        self.when_done(tables, "load", [group_f], lambda fs: self._small_done(tables, fs[0]))

    def _small_done(self, tables: list[str], group_f: PrefectFuture) -> None:
        if (err := _error(group_f)) is not None:
            for table in tables:
                self.fail(table, "load", err)
            return
        for outcome in group_f.result():
            self.outcomes[outcome.table] = outcome

    # --- load ---------------------------------------------------------------
    def load(self, table: str, replication_info: dict | None = None, depends_on: PrefectFuture | None = None) -> None:
        self.started.setdefault(table, time.time())
        wait_for = [depends_on] if depends_on is not None else None
        prepare_f = load_tasks.prepare_load.submit(self.replica, self.pg, table, self.config.effective(table),
                                                   self.options, replication_info, wait_for=wait_for)
        watched = [depends_on, prepare_f] if depends_on is not None else [prepare_f]
        self.when_done(table, "load", watched, lambda fs: self._chunks(table, fs, replication_info))

    def _chunks(self, table: str, futures: list[PrefectFuture], replication_info: dict | None) -> None:
        if len(futures) == 2 and (err := _error(futures[0])) is not None:
            return self.fail(table, "replication swap-in", err, replication_info)
        prepare_f = futures[-1]
        if (err := _error(prepare_f)) is not None:
            return self.fail(table, "load", err, replication_info)
        prepared = prepare_f.result()
        if isinstance(prepared, TableOutcome):
            self.outcomes[table] = prepared
            return
        chunk_fs = [load_tasks.load_chunk.submit(self.replica, self.pg, prepared, chunk) for chunk in prepared.chunks]
        self.when_done(table, "load", chunk_fs, lambda fs: self._finish(table, prepared, fs, replication_info))

    def _finish(self, table: str, prepared: load_steps.FullLoad, chunk_fs: list[PrefectFuture],
                replication_info: dict | None) -> None:
        for chunk_f in chunk_fs:
            if (err := _error(chunk_f)) is not None:
                self.fail(table, "load", err, replication_info)
                drop = load_tasks.drop_stage.submit(self.pg, prepared)
                self.chains.when_done([drop], lambda fs: None)
                return
        finish_f = load_tasks.finish_load.submit(self.replica, self.pg, prepared, [f.result() for f in chunk_fs])
        self.when_done(table, "load", [finish_f], lambda fs: self._finished(table, prepared, fs[0], replication_info))

    def _finished(self, table: str, prepared: load_steps.FullLoad, finish_f: PrefectFuture,
                  replication_info: dict | None) -> None:
        if (err := _error(finish_f)) is not None:
            self.fail(table, "load", err, replication_info)
            drop = load_tasks.drop_stage.submit(self.pg, prepared)
            self.chains.when_done([drop], lambda fs: None)
            return
        self.outcomes[table] = finish_f.result()


def run_tier_tables(config: TablesConfig, tier_names: list[str], replica: MySQLServer, pg: PostgresServer,
                    options: load_steps.LoadOptions, *, source: MySQLServer | None, full_refresh: bool,
                    replicate: bool) -> list[TableOutcome]:
    """Replicate (optionally) and load the tables of one tier in this flow run's task runner; one outcome each."""
    run = _TierRun(config, replica, pg, options, source=source, full_refresh=full_refresh)
    small = [t for t in tier_names if config.effective(t).estimated_rows <= SMALL_TABLE_ROWS]
    for start in range(0, len(small), SMALL_GROUP_SIZE):
        group = small[start:start + SMALL_GROUP_SIZE]
        run.submit(group, "load", lambda g=group: run.small_group(g, replicate))
    for table in tier_names:
        if table not in small:
            run.submit([table], "replication" if replicate else "load",
                       lambda t=table: run.replicate(t) if replicate else run.load(t))
    run.chains.run()
    return [run.outcomes.get(t) or load_steps.failed_outcome(t, "no outcome recorded", stage="flow")
            for t in tier_names]


def _options(full_refresh: bool, skip_verification: bool, full_sweep: bool) -> load_steps.LoadOptions:
    return load_steps.LoadOptions(full_refresh=full_refresh, verify=not skip_verification, full_sweep=full_sweep)


def _run(flow_name: str, *, tables: list[str] | None, full_refresh: bool, skip_verification: bool,
         full_sweep: bool, tables_file: str | None, replicate: bool,
         allow_empty: bool = False, fanout_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from prefect.runtime import flow_run

    log = get_logger()
    run_key = (fanout_options or {}).get("run_key")
    run_id = str(run_key or flow_run.get_id() or uuid.uuid4())
    parameters = {"tables": tables, "full_refresh": full_refresh, "skip_verification": skip_verification,
                  "full_sweep": full_sweep, "allow_empty": allow_empty}
    # The run row first: whatever fails before the first table (tables.yml, a block, a connection, a
    # refused configuration) is recorded as this run's failure, so `status` never shows the last good night.
    pg = resolve_block(ANALYTICS_BLOCK, PostgresServer)
    source = _source_block() if replicate else None
    if source is not None:
        check_analytics_is_not_source(source, pg)  # before the run row: "analytics" would be the source
    started = False
    try:
        load_tasks.open_run(pg, run_id, flow_name, str(flow_run.get_id() or ""), parameters)
        started = True
        config = load_tables_config(tables_file)
        names = select_tables(config, tables, allow_empty=allow_empty)
        if replicate and source is None:
            source = resolve_block(SOURCE_BLOCK, MySQLServer)
        replica = resolve_block(REPLICATION_BLOCK, MySQLServer)
        if source is not None:
            check_targets(source, replica, pg)
        options = _options(full_refresh, skip_verification, full_sweep)
        log.info("%s: %d tables, replica %s, analytics %s", flow_name, len(names), replica.describe(),
                 pg.describe())
        if replicate:
            copy_plan.ensure_database(replica)
            warn_dropped_leftovers(copy_plan.drop_leftover_tables(replica))
            _record_drift(source, config, log)
        load_tasks.setup_target(pg, options, run_id, flow_name, str(flow_run.get_id() or ""), parameters)
    except Exception as exc:
        log.error("%s: %s", flow_name, start_failure_message(exc))  # one clear line before Prefect's traceback
        if started:
            try:
                load_tasks.fail_start(pg, run_id, flow_name, start_failure_message(exc))
            except Exception as record_exc:  # noqa: BLE001 - the start's own error is the one to raise
                log.error("could not record the failed start: %s: %s", type(record_exc).__name__, record_exc)
        raise

    outcomes: list[TableOutcome] = []
    partitions_failed = ""
    if fanout_options is not None:
        from flows.nightly_fanout import fan_out_tiers  # the fan-out mode: each partition a child run

        outcomes, partitions_failed = fan_out_tiers(config, names, pg, run_id=run_id, **fanout_options)
    else:
        for tier, tier_names in config.by_tier(names):
            log.info("tier %d: %d tables", tier, len(tier_names))
            outcomes += run_tier_tables(config, tier_names, replica, pg, options, source=source,
                                        full_refresh=full_refresh, replicate=replicate)

    failed = [o for o in outcomes if o.failed]
    summary = (f"{flow_name}: {len(outcomes) - len(failed)} of {len(outcomes)} tables ok, {len(failed)} failed; "
               f"{sum(o.rows for o in outcomes)} rows loaded, {sum(o.zero_dates for o in outcomes)} zero dates → NULL, "
               f"{sum(o.nul_bytes for o in outcomes)} NUL bytes removed")
    create_table_artifact(key=ARTIFACT_KEY, table=[o.as_row() for o in outcomes], description=summary)
    load_tasks.record_run(pg, run_id, outcomes, summary)
    for outcome in failed:
        log.error("%s: %s", outcome.table, outcome.error)
    if failed:
        detail = "; ".join(f"{o.table}: {o.error}" for o in failed[:10])
        raise TablesFailed(f"{len(failed)} of {len(outcomes)} tables failed: {detail}"
                           + (f" ({partitions_failed})" if partitions_failed else ""))
    log.info(summary)
    return [o.as_row() for o in outcomes]


def _source_block() -> MySQLServer | None:
    """The source block, or None when it cannot be resolved yet (resolved again, and recorded, in the run)."""
    try:
        return resolve_block(SOURCE_BLOCK, MySQLServer)
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
    create_table_artifact(key="nightly-schema-drift", table=report.to_rows() or [{"drift": "none"}],
                          description=report.summary())
    if report.has_drift:
        log.warning("schema drift against tables.yml: %s", report.summary())


@flow(name="nightly-etl", task_runner=ThreadPoolTaskRunner(max_workers=NIGHTLY_WORKERS))
def nightly_etl(tables: list[str] | None = None, full_refresh: bool = False, skip_verification: bool = False,
                full_sweep: bool = False, tables_file: str | None = None,
                allow_empty: bool = False, mode: str = "in-pod", run_key: str | None = None,
                fanout_width: int = 4) -> list[dict[str, Any]]:
    """Replicate each table from OpenDental into the replication MySQL, then load it into PostgreSQL ``raw``.

    Args:
        tables: table names (default: every table in tables.yml).
        full_refresh: copy and load every chosen table fully, ignoring watermarks (accepts new column types).
        skip_verification: do not compare raw with the replica after loading.
        full_sweep: reconcile every key range of every keyed table tonight (keys and row checksums), even
            where tables.yml turns reconciliation off or checksums a rolling slice.
        tables_file: path of tables.yml (default: the project's, or $CLINICFLOW_TABLES_FILE).
        allow_empty: succeed when tables.yml lists no table (otherwise that is an error).
        mode: "in-pod" (every table in this run's task runner) or "fanout" (each tier's tables, or groups of
            small tables, as child runs of the nightly-tables deployment; docs/scale-out.md).
        run_key: fan-out only: the night's key (default: this flow run's id). A rerun with the same key keeps
            the partitions that completed and starts only the failed ones again.
        fanout_width: fan-out only: child runs started at a time.
    """
    if mode not in ("in-pod", "fanout"):
        raise ValueError(f"nightly_etl: mode must be 'in-pod' or 'fanout', got {mode!r}")
    fanout_options = None
    if mode == "fanout":
        fanout_options = {"run_key": run_key, "width": fanout_width, "child_parameters": {
            "full_refresh": full_refresh, "skip_verification": skip_verification, "full_sweep": full_sweep,
            "tables_file": tables_file}}
    return _run("nightly_etl", tables=tables, full_refresh=full_refresh, skip_verification=skip_verification,
                full_sweep=full_sweep, tables_file=tables_file, replicate=True,
                allow_empty=allow_empty, fanout_options=fanout_options)


@flow(name="load-tables", task_runner=ThreadPoolTaskRunner(max_workers=NIGHTLY_WORKERS))
def load_tables(tables: list[str] | None = None, full_refresh: bool = False, skip_verification: bool = False,
                full_sweep: bool = False, tables_file: str | None = None,
                allow_empty: bool = False) -> list[dict[str, Any]]:
    """Load tables from the replication MySQL into PostgreSQL ``raw`` (no replication step). Same parameters."""
    return _run("load_tables", tables=tables, full_refresh=full_refresh, skip_verification=skip_verification,
                full_sweep=full_sweep, tables_file=tables_file, replicate=False,
                allow_empty=allow_empty)
