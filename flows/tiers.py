"""The one tier runner of the OpenDental flows (nightly_etl, load_tables, nightly_tables, replicate_tables).

Wiring only. Within a tier every table moves through its own chain of tasks,
and each step is submitted the moment the table's previous step finished,
never waiting for the rest of the tier:

    replication: plan → copy chunks (or one incremental run) → swap-in
    load:        prepare-load (submitted with the swap-in future as its
                 dependency) → load chunks (full loads only) → finish-load

:func:`run_tier_tables` runs replication and/or load (small tables in groups,
one ``small-tables`` task each); :func:`replicate_tier` runs the replication
chains only (``replicate_tables``); :func:`fan_out_tiers` runs each tier as
child runs of ``nightly-tables`` instead (``nightly_etl(mode="fanout")``,
docs/scale-out.md). Settings read from the environment are
functions, read when called (a flow run's task runner reads its size when the
run starts: :class:`EnvSizedTaskRunner`).
"""
from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.core import progress, settings
from clinicflow.core.logs import get_logger
from clinicflow.core.retry import TASK_RETRY
from clinicflow.opendental import fanout
from clinicflow.opendental.metrics import TableOutcome
from clinicflow.opendental.replication import copy_plan, replica_copy
from clinicflow.opendental.tables.config import ConfigError, TablesConfig
from clinicflow.opendental.warehouse import load_steps
from clinicflow.scaleout.fanout import DEFAULT_CONCURRENCY_LIMIT
from flows.fanout_runner import run_partitions
from tasks import load as load_tasks
from tasks import replication as repl_tasks


# --- settings, read when called ------------------------------------------------
def nightly_workers() -> int:
    """Task-runner threads of the nightly flows (``CLINICFLOW_NIGHTLY_WORKERS``, default 4)."""
    return settings.nightly_workers()


def replication_workers() -> int:
    """Concurrent copies of ``replicate_tables`` (``CLINICFLOW_REPLICATION_WORKERS``, default 4)."""
    return settings.replication_workers()


def small_table_rows() -> int:
    """Tables estimated (tables.yml ``estimated_rows``) at or below this go in groups (``CLINICFLOW_SMALL_TABLE_ROWS``).

    For them a task run per step costs more than the copy (450-table no-op bench, docs/loading.md).
    """
    return settings.small_table_rows()


def small_group_size() -> int:
    """Small tables per ``small-tables`` task (``CLINICFLOW_SMALL_GROUP_SIZE``, default 25)."""
    return settings.small_group_size()


class EnvSizedTaskRunner(ThreadPoolTaskRunner[Any]):
    """A thread pool whose size is read (``workers()``) when a flow run starts, not when the flow is imported.

    Prefect duplicates a flow's task runner for every run; the duplicate reads the size again.
    """

    def __init__(self, workers: Callable[[], int]) -> None:
        super().__init__(max_workers=workers())
        self._workers = workers

    def duplicate(self) -> EnvSizedTaskRunner:
        return type(self)(self._workers)


def env_sized_task_runner(workers: Callable[[], int]) -> TaskRunner[PrefectFuture[Any]]:
    """An :class:`EnvSizedTaskRunner`, typed as ``@flow(task_runner=...)`` takes it.

    The cast covers a gap in Prefect's types: ``TaskRunner`` is invariant in its future type, so no
    ``ThreadPoolTaskRunner`` (``PrefectConcurrentFuture``) matches the decorator's ``TaskRunner[PrefectFuture]``.
    """
    return cast("TaskRunner[PrefectFuture[Any]]", EnvSizedTaskRunner(workers))


# --- helpers shared by the flows ------------------------------------------------
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


def warn_dropped_leftovers(names: list[str]) -> None:
    if names:
        get_logger().warning("dropped %d table(s) a killed run left in the replica: %s", len(names), ", ".join(names))


def load_options(full_refresh: bool, skip_verification: bool, full_sweep: bool) -> load_steps.LoadOptions:
    return load_steps.LoadOptions(full_refresh=full_refresh, verify=not skip_verification, full_sweep=full_sweep)


@dataclass
class ReplicatedTable:
    """One table's outcome in ``replicate_tables`` (a row of its ``replication-summary`` artifact)."""

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


# --- the chains ----------------------------------------------------------------
class _Chains:
    """Runs continuations in the flow thread as groups of futures finish (no polling, no tier barrier)."""

    def __init__(self) -> None:
        self._done: queue.Queue[dict[str, Any]] = queue.Queue()
        self._open = 0

    def when_done(self, futures: list[PrefectFuture[Any]], then: Callable[[list[PrefectFuture[Any]]], None]) -> None:
        group = {"left": len(futures), "futures": futures, "then": then}
        self._open += 1
        if not futures:
            self._done.put(group)
            group["left"] = 1
            return
        for future in futures:
            future.add_done_callback(lambda _f: self._done.put(group))

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


def _error(future: PrefectFuture[Any]) -> BaseException | str | None:
    """The exception of a future that did not complete, or None."""
    state = future.state
    if state.is_completed():
        return None
    try:
        future.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - reported per table
        return exc
    return f"{state.name}: {state.message or 'did not complete'}"


def _error_text(error: BaseException | str) -> str:
    return error if isinstance(error, str) else f"{type(error).__name__}: {error}"


class _ReportedOutcomes(dict[str, TableOutcome]):
    """The tier's outcomes; each one set is reported to the run's progress watchers (the terminal)."""

    def __init__(self, tier: int) -> None:
        super().__init__()
        self.tier = tier

    def __setitem__(self, table: str, outcome: TableOutcome) -> None:
        super().__setitem__(table, outcome)
        progress.table_done(self.tier, table, outcome.status, outcome.replication_rows, outcome.rows)


class _TierRun:
    """The task chains of one tier; fills ``outcomes`` (load) or ``replicated`` (replication only), one per table."""

    def __init__(self, config: TablesConfig, replica: MySQLServer, pg: PostgresServer | None,
                 options: load_steps.LoadOptions, *, source: MySQLServer | None, full_refresh: bool,
                 tier: int = 0, load: bool = True) -> None:
        self.config, self.replica, self.pg, self.options = config, replica, pg, options
        self.source, self.full_refresh, self.tier, self.loads = source, full_refresh, tier, load
        self.outcomes: dict[str, TableOutcome] = _ReportedOutcomes(tier)
        self.replicated: dict[str, ReplicatedTable] = {}
        self.chains = _Chains()
        self.started: dict[str, float] = {}

    @property
    def source_server(self) -> MySQLServer:
        """The replication source (a tier run that replicates has one)."""
        if self.source is None:
            raise RuntimeError("this tier run has no replication source")
        return self.source

    @property
    def pg_server(self) -> PostgresServer:
        """The load target (a tier run that loads has one)."""
        if self.pg is None:
            raise RuntimeError("this tier run only replicates: it has no load target")
        return self.pg

    def fail(self, table: str, stage: str, error: BaseException | str,
             replication_info: dict[str, Any] | None = None) -> None:
        if not self.loads:
            done = self.replicated.setdefault(table, ReplicatedTable(table, self.tier))
            done.status, done.error = "failed", _error_text(error)
            return
        self.outcomes[table] = load_steps.failed_outcome(table, error, stage=stage, started=self.started.get(table),
                                                         replication=replication_info)

    def _guarded(self, tables: list[str], stage: str,
                 then: Callable[[list[PrefectFuture[Any]]], None]) -> Callable[[list[PrefectFuture[Any]]], None]:
        """``then``, but an exception in it fails only ``tables`` (recorded), never the flow thread and the run."""
        def run(futures: list[PrefectFuture[Any]]) -> None:
            try:
                then(futures)
            except Exception as exc:  # noqa: BLE001 - recorded for these tables; the others go on
                for table in tables:
                    self.fail(table, stage, exc)
        return run

    def submit(self, tables: list[str], stage: str, start: Callable[[], None]) -> None:
        """Start a table's (or group's) chain; a failure to start fails those tables only."""
        self._guarded(tables, stage, lambda _futures: start())([])

    def when_done(self, table: str | list[str], stage: str, futures: list[PrefectFuture[Any]],
                  then: Callable[[list[PrefectFuture[Any]]], None]) -> None:
        tables = [table] if isinstance(table, str) else table
        self.chains.when_done(futures, self._guarded(tables, stage, then))

    # --- replication ----------------------------------------------------------
    def replicate(self, table: str) -> None:
        self.started[table] = time.time()
        if not self.loads:
            self.replicated[table] = ReplicatedTable(table, self.tier)
        plan_f = repl_tasks.plan_copy.submit(self.source_server, self.replica, table, self.config.effective(table),
                                              self.full_refresh, self.options.full_sweep)
        self.when_done(table, "replication", [plan_f], lambda fs: self._copy(table, fs[0]))

    def _copy(self, table: str, plan_f: PrefectFuture[Any]) -> None:
        if (err := _error(plan_f)) is not None:
            return self.fail(table, "replication", err)
        plan = plan_f.result()
        if not self.loads:
            self.replicated[table].mode = plan.mode
        if plan.mode == "unchanged":
            if self.loads:
                self.load(table, {"rows": 0, "seconds": time.time() - self.started[table]}, depends_on=None)
            return None
        if plan.mode == "incremental":
            copies = [repl_tasks.copy_incremental.submit(self.source_server, self.replica, plan)]
        else:
            copies = [repl_tasks.copy_chunk.submit(self.source_server, self.replica, plan, unit,
                                                   unit.label if unit else "all")
                      for unit in replica_copy.full_copy_units(plan)]
        self.when_done(table, "replication", copies, lambda fs: self._swap(table, plan, fs))
        return None

    def _swap(self, table: str, plan: copy_plan.CopyPlan, copies: list[PrefectFuture[Any]]) -> None:
        for copy in copies:
            if (err := _error(copy)) is not None:
                return self.fail(table, "replication", err)
        results = [c.result() for c in copies]
        reconciled = next((r.reconciled for r in results if r.reconciled is not None), None)
        swap = repl_tasks.swap_in.submit(self.replica, plan) if plan.mode == "full" else None
        if not self.loads:
            done = self.replicated[table]
            done.rows = sum(r.rows for r in results)
            if reconciled is not None:
                s = reconciled
                done.reconciled = (f"{s.swept}: {s.rows_deleted} deleted, {s.rows_missing} missing copied, "
                                   f"{s.rows_changed} changed copied, {s.ranges_recopied}/{s.ranges} ranges re-read")
            if swap is not None:
                self.when_done(table, "replication", [swap], lambda fs: self._swapped(table, fs[0]))
            return None
        info = {"rows": sum(r.rows for r in results), "seconds": time.time() - self.started[table],
                "reconciled": reconciled}
        # The load is submitted now, with the replication's last step as its dependency.
        self.load(table, info, depends_on=swap)
        return None

    def _swapped(self, table: str, swap_f: PrefectFuture[Any]) -> None:
        if (err := _error(swap_f)) is not None:
            self.fail(table, "replication", err)

    # --- small tables: replication and load together, in groups ---------------
    def small_group(self, tables: list[str], replicate: bool) -> None:
        for table in tables:
            self.started[table] = time.time()
        configs = {t: self.config.effective(t) for t in tables}
        label = f"{tables[0]}..{tables[-1]}" if len(tables) > 1 else tables[0]
        group_f = load_tasks.small_table_group.submit(self.source_server if replicate else None, self.replica,
                                                      self.pg_server, configs, self.options, label)
        self.when_done(tables, "load", [group_f], lambda fs: self._small_done(tables, fs[0]))

    def _small_done(self, tables: list[str], group_f: PrefectFuture[Any]) -> None:
        if (err := _error(group_f)) is not None:
            for table in tables:
                self.fail(table, "load", err)
            return
        for outcome in group_f.result():
            self.outcomes[outcome.table] = outcome

    # --- load -------------------------------------------------------------------
    def load(self, table: str, replication_info: dict[str, Any] | None = None,
             depends_on: PrefectFuture[Any] | None = None) -> None:
        self.started.setdefault(table, time.time())
        wait_for = [depends_on] if depends_on is not None else None
        prepare_f = load_tasks.prepare_load.submit(self.replica, self.pg_server, table, self.config.effective(table),
                                                   self.options, replication_info, wait_for=wait_for,
                                                   return_state=False)
        watched = [depends_on, prepare_f] if depends_on is not None else [prepare_f]
        self.when_done(table, "load", watched, lambda fs: self._chunks(table, fs, replication_info))

    def _chunks(self, table: str, futures: list[PrefectFuture[Any]], replication_info: dict[str, Any] | None) -> None:
        if len(futures) == 2 and (err := _error(futures[0])) is not None:
            return self.fail(table, "replication swap-in", err, replication_info)
        prepare_f = futures[-1]
        if (err := _error(prepare_f)) is not None:
            return self.fail(table, "load", err, replication_info)
        prepared = prepare_f.result()
        if isinstance(prepared, TableOutcome):
            self.outcomes[table] = prepared
            return None
        chunk_fs = [load_tasks.load_chunk.submit(self.replica, self.pg_server, prepared, chunk)
                    for chunk in prepared.chunks]
        self.when_done(table, "load", chunk_fs, lambda fs: self._finish(table, prepared, fs, replication_info))
        return None

    def _finish(self, table: str, prepared: load_steps.FullLoad, chunk_fs: list[PrefectFuture[Any]],
                replication_info: dict[str, Any] | None) -> None:
        for chunk_f in chunk_fs:
            if (err := _error(chunk_f)) is not None:
                self.fail(table, "load", err, replication_info)
                drop = load_tasks.drop_stage.submit(self.pg_server, prepared)
                self.chains.when_done([drop], lambda fs: None)
                return
        finish_f = load_tasks.finish_load.submit(self.replica, self.pg_server, prepared, [f.result() for f in chunk_fs])
        self.when_done(table, "load", [finish_f], lambda fs: self._finished(table, prepared, fs[0], replication_info))

    def _finished(self, table: str, prepared: load_steps.FullLoad, finish_f: PrefectFuture[Any],
                  replication_info: dict[str, Any] | None) -> None:
        if (err := _error(finish_f)) is not None:
            self.fail(table, "load", err, replication_info)
            drop = load_tasks.drop_stage.submit(self.pg_server, prepared)
            self.chains.when_done([drop], lambda fs: None)
            return
        self.outcomes[table] = finish_f.result()


def run_tier_tables(config: TablesConfig, tier_names: list[str], replica: MySQLServer, pg: PostgresServer,
                    options: load_steps.LoadOptions, *, source: MySQLServer | None, full_refresh: bool,
                    replicate: bool, tier: int = 0) -> list[TableOutcome]:
    """Replicate (optionally) and load the tables of one tier in this flow run's task runner; one outcome each."""
    progress.tier_started(tier, len(tier_names))
    run = _TierRun(config, replica, pg, options, source=source, full_refresh=full_refresh, tier=tier)
    rows_limit, group_size = small_table_rows(), small_group_size()
    small = [t for t in tier_names if config.effective(t).estimated_rows <= rows_limit]
    for start in range(0, len(small), group_size):
        group = small[start:start + group_size]
        run.submit(group, "load", partial(run.small_group, group, replicate))
    for table in tier_names:
        if table not in small:
            run.submit([table], "replication" if replicate else "load",
                       partial(run.replicate, table) if replicate else partial(run.load, table))
    run.chains.run()
    return [run.outcomes.get(t) or load_steps.failed_outcome(t, "no outcome recorded", stage="flow")
            for t in tier_names]


def replicate_tier(source: MySQLServer, replica: MySQLServer, config: TablesConfig, tier: int, names: list[str],
                   full_refresh: bool, full_sweep: bool = False) -> list[ReplicatedTable]:
    """Replicate the tables of one tier (no load); a failing table never stops the others."""
    options = load_steps.LoadOptions(full_refresh=full_refresh, full_sweep=full_sweep)
    run = _TierRun(config, replica, None, options, source=source, full_refresh=full_refresh, tier=tier, load=False)
    for table in names:
        run.submit([table], "replication", partial(run.replicate, table))
    run.chains.run()
    outcomes = []
    for table in names:
        done = run.replicated.get(table) or ReplicatedTable(table, tier, status="failed", error="no outcome recorded")
        done.seconds = time.time() - run.started.get(table, time.time())
        outcomes.append(done)
    return outcomes


# --- fan-out mode: every tier's partitions as child runs of the nightly-tables deployment ------
CHILD_DEPLOYMENT = "nightly-tables/nightly-tables"
PARTITIONS_ARTIFACT_KEY = "nightly-etl-partitions"


def child_deployment() -> str:
    """The deployment fan-out children run as (``CLINICFLOW_FANOUT_DEPLOYMENT``, default :data:`CHILD_DEPLOYMENT`)."""
    return settings.fanout_deployment() or CHILD_DEPLOYMENT


def fanout_concurrency_limit() -> str:
    """The global concurrency limit children hold a slot of (``CLINICFLOW_FANOUT_LIMIT``, or ``clinicflow-fanout``)."""
    return settings.fanout_limit() or DEFAULT_CONCURRENCY_LIMIT


def child_parameters(*, full_refresh: bool, skip_verification: bool, full_sweep: bool, tables_file: str | None,
                     source_block: str, replica_block: str, analytics_block: str,
                     concurrency_limit: str | None) -> dict[str, Any]:
    """What every child of a fanned-out night gets from its parent (the clinic's blocks and limit included)."""
    # concurrency_limit None: each child reads its own $CLINICFLOW_FANOUT_LIMIT.
    return {"full_refresh": full_refresh, "skip_verification": skip_verification, "full_sweep": full_sweep,
            "tables_file": tables_file, "source_block": source_block, "replica_block": replica_block,
            "analytics_block": analytics_block, "concurrency_limit": concurrency_limit}


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
    log = get_logger()
    key = run_key or run_id
    deployment = child_deployment()
    outcomes: list[TableOutcome] = []
    reports: list[fanout.PartitionReport] = []
    for parts in fanout.plan_table_partitions(config, names, small_rows=small_table_rows(),
                                              group_size=small_group_size()):
        log.info("tier %d: %d tables in %d child runs", parts[0].tier, sum(len(p.tables) for p in parts), len(parts))
        children = run_partitions(deployment, key, {
            p.name: {**child_parameters, "tables": list(p.tables), "run_id": run_id} for p in parts}, width=width)
        recorded = read_table_outcomes(pg, run_id, [t for p in parts for t in p.tables])
        for part in parts:
            report = fanout.report_partition(part, children[part.name],
                                             {t: {"status": o.status, "rows": o.rows} for t, o in recorded.items()})
            reports.append(report)
            outcomes += [recorded.get(t) or load_steps.failed_outcome(t, report.error, stage="fan-out")
                         for t in part.tables]
    message = fanout.failed_partitions_message(reports)
    create_table_artifact(key=PARTITIONS_ARTIFACT_KEY, table=[r.as_row() for r in reports],
                          description=message or f"{len(reports)} partitions ok")
    return outcomes, message
