"""The steps of loading one table into PostgreSQL ``raw``, as plain functions.

A table's load is, in order: :func:`prepare_load` (plan, decide the mode,
apply schema drift; for an incremental or unchanged table it also does the
work and returns the finished :class:`~clinicflow.opendental.metrics.TableOutcome`),
then for a full load :func:`load_chunk` per key range (parallel-safe) and
:func:`finish_load` (key, indexes, swap, verification). The Prefect tasks in
``tasks/load.py`` wrap exactly these; :func:`load_table_once` runs them in a
row without Prefect (tests, benches).

Modes:

* ``full``: first load, ``full_refresh``, a ``full_table`` table whose content
  changed (CHECKSUM TABLE differs from the last load's), or a table without a
  primary key or incremental columns;
* ``incremental``: keyset merge after the stored watermark (a new column
  resets the watermark: every row is merged once so the column gets its
  values);
* ``unchanged``: a ``full_table`` table whose checksum equals the last load's.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.mysql import catalog, sessions
from clinicflow.core.dbapi import Connection, PgConnection
from clinicflow.core.errors import one_line
from clinicflow.core.logs import get_logger
from clinicflow.opendental.cdc.state import cdc_active_tables
from clinicflow.opendental.chunks import keyset_after, ranges_from_boundaries
from clinicflow.opendental.metrics import TableMode, TableOutcome
from clinicflow.opendental.sweep import Sweep, load_verification_sweep, sweep_for
from clinicflow.opendental.tables.config import TableConfig
from clinicflow.opendental.warehouse import (
    copy_encoding,
    copy_stream,
    ddl,
    full_load,
    incremental_load,
    load_plan,
    load_state,
    raw_drift,
    verify,
    verify_canonical,
)

# Chunks of one full load copied at the same time outside Prefect (load_table_once, small tables).
LOCAL_CHUNK_WORKERS = 2


@dataclass(frozen=True)
class LoadOptions:
    full_refresh: bool = False
    verify: bool = True
    full_sweep: bool = False  # reconcile every range of every keyed table tonight, whatever tables.yml says
    raw_schema: str = load_plan.RAW_SCHEMA
    stage_schema: str = load_plan.STAGE_SCHEMA
    state_schema: str = load_plan.STATE_SCHEMA


@dataclass
class FullLoad:
    """A full load prepared by :func:`prepare_load`: staging table created, chunks planned."""

    plan: load_plan.LoadPlan
    options: LoadOptions
    reason: str
    chunks: list[full_load.Chunk]
    watermark: tuple[str, ...] | None
    fingerprint: str | None
    started: float = field(default_factory=time.time)
    replication_rows: int | None = None
    replication_seconds: float | None = None
    reconciliation: dict[str, dict[str, Any]] = field(default_factory=dict)  # the replica leg's figures, if any
    sweep: Sweep = field(default_factory=Sweep)  # the table's reconciliation sweep; its slice is verified


def setup_target(pg_server: Any, options: LoadOptions = LoadOptions()) -> None:
    """Schemas, state table and helper functions in PostgreSQL, crash leftovers removed (idempotent; once per run)."""
    with connected(pg_server) as conn:
        ddl.ensure_schemas(
            conn, raw_schema=options.raw_schema, stage_schema=options.stage_schema, state_schema=options.state_schema
        )
        verify_canonical.ensure_functions(conn, options.state_schema)
        dropped = full_load.drop_replaced_leftovers(conn, options.stage_schema)
        if dropped:
            get_logger().warning(
                "dropped %d table(s) a crashed load left in %s: %s",
                len(dropped),
                ddl.replaced_schema(options.stage_schema),
                ", ".join(dropped),
            )


def _outcome(plan: load_plan.LoadPlan, mode: TableMode, started: float, **values: Any) -> TableOutcome:
    outcome = TableOutcome(plan.table, mode=mode, seconds=time.time() - started, **values)
    return outcome


def _apply_conversions(outcome: TableOutcome, counts: copy_encoding.ConversionCounts) -> None:
    outcome.conversions = counts.per_column
    outcome.zero_dates = counts.total("zero_dates")
    outcome.nul_bytes = counts.total("nul_bytes")


def _after_load(
    mysql_server: Any,
    mysql_conn: Connection,
    pg_conn: PgConnection,
    plan: load_plan.LoadPlan,
    options: LoadOptions,
    outcome: TableOutcome,
    sweep: Sweep | None,
    replication: dict[str, Any] | None = None,
    *,
    verify_sweep: Sweep | None = None,
) -> TableOutcome:
    """Reconciliation (``sweep``) or verification only (``None``, after a full load); a difference fails the table.

    The reconciliation's comparison is the night's verification: ranges it
    repaired are compared again, and any still different fail the table. A
    full load's verification compares the table's count and key sum (every
    range's when those differ) and the row checksums of ``verify_sweep``'s slice
    (the COPY itself is all-or-nothing per chunk; the following nights' slices
    compare the rest).
    """
    if sweep is not None and sweep.enabled and plan.primary_key:
        # The replica's leg sampled the key tonight; its boundaries serve raw's leg too.
        replica_leg = (replication or {}).get("reconciled")
        ranges = ranges_from_boundaries(replica_leg.boundaries) if replica_leg and replica_leg.boundaries else None
        stats, result = verify.reconcile_raw(mysql_server, mysql_conn, pg_conn, plan, sweep, ranges=ranges)
        outcome.record_reconciliation("raw", stats)
        if not options.verify:
            outcome.verification = "skipped"
            return outcome
    elif not options.verify:
        outcome.verification = "skipped"
        return outcome
    else:
        result = verify.verify_table(mysql_conn, pg_conn, plan, sweep=load_verification_sweep(verify_sweep or Sweep()))
        outcome.swept = "; ".join(filter(None, [outcome.swept, result.swept_note()]))
    outcome.verification = result.status
    if result.status == "differs":
        outcome.status = "failed"
        outcome.error = "verification failed: " + result.summary()
    elif result.status == "stale":
        outcome.error = (
            "warning: rows deleted in the replica remain in raw (reconcile_keys is off): " + result.summary()
        )
    return outcome


def prepare_load(
    mysql_server: Any,
    pg_server: Any,
    table: str,
    config: TableConfig,
    options: LoadOptions = LoadOptions(),
    *,
    replication: dict[str, Any] | None = None,
) -> FullLoad | TableOutcome:
    """Plan one table; run it when it is incremental or unchanged (then reconcile raw); else prepare its full load."""
    started = time.time()
    with sessions.raw_connected(mysql_server, streaming=True) as mysql_conn, connected(pg_server) as pg_conn:
        source = catalog.read_table(mysql_conn, table, where="replication")
        plan = load_plan.plan_load(
            source,
            config,
            raw_schema=options.raw_schema,
            stage_schema=options.stage_schema,
            state_schema=options.state_schema,
        )
        sweep = sweep_for(config, full_sweep=options.full_sweep)
        existing = load_state.raw_table_columns(pg_conn, plan.raw_schema, table)
        state = load_state.read_state(pg_conn, plan) if existing is not None else None
        reason = ""
        drift = None
        if existing is None:
            reason = "first load"
        elif options.full_refresh:
            reason = "full refresh"
        else:
            drift = raw_drift.compare_raw_columns(plan, existing)  # raises on an incompatible type change
            if drift.reload_columns:
                reason = f"TIMESTAMP column(s) {', '.join(drift.reload_columns)} now loaded as UTC instants"
        fingerprint = None
        if not plan.incremental_columns:
            # Taken before the copy: a change during it makes the next night reload.
            fingerprint = load_state.source_fingerprint(mysql_conn, plan)
        if not reason and not plan.incremental_columns:
            if (
                state is not None
                and state.source_fingerprint == fingerprint
                and drift is not None
                and not drift.added_columns
                and not drift.widened_columns
            ):
                outcome = _outcome(plan, "unchanged", started, status="unchanged", **_replication_fields(replication))
                return _after_load(mysql_server, mysql_conn, pg_conn, plan, options, outcome, sweep, replication)
            reason = "content changed" if state is not None else "no load state"
        if reason:
            watermark = full_load.current_keyset_max(mysql_conn, plan)
            full_load.prepare_stage(pg_conn, plan)
            chunks = full_load.full_load_chunks(mysql_conn, plan)
            return FullLoad(
                plan,
                options,
                reason,
                chunks,
                watermark,
                fingerprint,
                started,
                **_replication_fields(replication),
                sweep=sweep,
            )
        # Incremental.
        assert drift is not None
        if load_state.raw_table_columns(pg_conn, plan.stage_schema, table) is not None:
            # A full load killed before its swap left its staging table; no later full load may come to drop it.
            full_load.drop_table(pg_server.connect, full_load.stage_target(plan))
            get_logger().warning(
                "table %r: dropped the staging table a killed full load left in %s", table, plan.stage_schema
            )
        watermark = (
            state.watermark if (state is not None and tuple(state.watermark_columns) == plan.keyset_columns) else None
        )
        if drift.added_columns or drift.widened_columns:
            raw_drift.apply_drift(pg_conn, plan, drift)
            if drift.added_columns:
                watermark = None  # every row once more, so the new column gets its values
        if table in cdc_active_tables(mysql_conn):  # CDC keeps it current: only the reconciliation below
            stats = incremental_load.IncrementalStats(watermark=watermark)
        else:
            stats = incremental_load.load_incremental(mysql_conn, pg_conn, plan, watermark, keyset_after)
        outcome = _outcome(
            plan,
            "incremental",
            started,
            rows=stats.rows_read,
            rows_changed=stats.rows_changed,
            bytes=stats.bytes,
            **_replication_fields(replication),
        )
        _apply_conversions(outcome, stats.conversions)
        if drift.added_columns:
            outcome.error = f"note: new column(s) {', '.join(drift.added_columns)} added and filled"
        return _after_load(mysql_server, mysql_conn, pg_conn, plan, options, outcome, sweep, replication)


def _replication_fields(replication: dict[str, Any] | None) -> dict[str, Any]:
    if not replication:
        return {}
    fields: dict[str, Any] = {
        "replication_rows": replication.get("rows"),
        "replication_seconds": replication.get("seconds"),
    }
    if replication.get("reconciled") is not None:
        fields["reconciliation"] = {"replica": replication["reconciled"].figures()}
    return fields


def load_chunk(mysql_server: Any, pg_server: Any, load: FullLoad, chunk: full_load.Chunk) -> copy_stream.CopyStats:
    """COPY one chunk of a full load into the staging table."""
    with sessions.raw_connected(mysql_server, streaming=True) as mysql_conn, connected(pg_server) as pg_conn:
        return full_load.load_stage_chunk(
            mysql_conn, pg_conn, load.plan, chunk.predicate, chunk.params, mysql_server=mysql_server
        )


def finish_load(
    mysql_server: Any, pg_server: Any, load: FullLoad, chunk_stats: list[copy_stream.CopyStats]
) -> TableOutcome:
    """Key, indexes and swap of a full load, then verification."""
    with sessions.raw_connected(mysql_server) as mysql_conn, connected(pg_server) as pg_conn:
        total = copy_stream.CopyStats()
        for stats in chunk_stats:
            total.add(stats)
        nul_columns = {c for c, counts in total.conversions.per_column.items() if counts.get("nul_bytes")}
        full_load.build_stage_indexes(pg_server.connect, load.plan, nul_columns=nul_columns)
        replaced = full_load.finish_full_load(
            pg_conn, load.plan, watermark=load.watermark, fingerprint=load.fingerprint
        )
        outcome = _outcome(
            load.plan,
            "full",
            load.started,
            rows=total.rows,
            rows_changed=total.rows,
            bytes=total.bytes,
            replication_rows=load.replication_rows,
            replication_seconds=load.replication_seconds,
            reconciliation=dict(load.reconciliation),
        )
        _apply_conversions(outcome, total.conversions)
        # The replaced table's files are removed while verification reads the new one
        # (the removal waits on the disk, verification on the CPU).
        with ThreadPoolExecutor(max_workers=1) as pool:
            dropped = (
                pool.submit(full_load.drop_table, pg_server.connect, full_load.replaced_target(load.plan))
                if replaced
                else None
            )
            outcome = _after_load(
                mysql_server, mysql_conn, pg_conn, load.plan, load.options, outcome, None, verify_sweep=load.sweep
            )
        if dropped is not None and (exc := dropped.exception()) is not None:
            # raw is loaded; the next run's setup drops the copy.
            get_logger().warning(
                "table %r: the replaced copy was not dropped yet (%s: %s); the next run drops it",
                load.plan.table,
                type(exc).__name__,
                exc,
            )
        return outcome


def drop_stage(pg_server: Any, load: FullLoad) -> None:
    """Remove the staging table of a full load that failed (raw keeps its previous content)."""
    full_load.drop_table(pg_server.connect, full_load.stage_target(load.plan))


def failed_outcome(
    table: str,
    error: BaseException | str,
    *,
    stage: str,
    started: float | None = None,
    replication: dict[str, Any] | None = None,
) -> TableOutcome:
    """The outcome of a table that failed at ``stage`` (replication, load, ...): the message names the table."""
    # The first line only: a driver's later lines (DETAIL, a failing row) may hold patient data.
    message = error if isinstance(error, str) else one_line(error, limit=None)
    return TableOutcome(
        table,
        status="failed",
        mode="none",
        error=f"{stage}: {message}",
        seconds=(time.time() - started) if started else 0.0,
        **_replication_fields(replication),
    )


def load_table_once(
    mysql_server: Any,
    pg_server: Any,
    table: str,
    config: TableConfig,
    options: LoadOptions = LoadOptions(),
    *,
    replication: dict[str, Any] | None = None,
) -> TableOutcome:
    """All load steps of one table in a row, without Prefect (small-table groups, tests, benches).

    ``replication``: the replica copy's figures for the table (rows, seconds, reconciled), kept in its outcome.
    """
    return _load_one(mysql_server, pg_server, table, config, options, replication)


def _load_one(
    replica_server: Any,
    pg_server: Any,
    table: str,
    config: TableConfig,
    options: LoadOptions,
    replication: dict[str, Any] | None,
) -> TableOutcome:
    prepared = prepare_load(replica_server, pg_server, table, config, options, replication=replication)
    if isinstance(prepared, TableOutcome):
        return prepared
    try:
        # Two chunk streams at a time, as the flow's task runner would run them: while one
        # waits on MySQL the other keeps PostgreSQL busy.
        with ThreadPoolExecutor(max_workers=min(LOCAL_CHUNK_WORKERS, len(prepared.chunks))) as pool:
            stats = list(
                pool.map(lambda chunk: load_chunk(replica_server, pg_server, prepared, chunk), prepared.chunks)
            )
        return finish_load(replica_server, pg_server, prepared, stats)
    except BaseException:
        drop_stage(pg_server, prepared)
        raise
