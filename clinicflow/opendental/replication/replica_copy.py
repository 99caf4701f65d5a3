"""Copying a table into the replica: full copies in key ranges with an atomic swap, incremental keyset pages merged."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.mysql.catalog import table_exists
from clinicflow.connectors.mysql.sessions import catalog_text, raw_connected
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.core.sql import quote_ident
from clinicflow.opendental import reconcile
from clinicflow.opendental.cdc.state import cdc_keeps_current
from clinicflow.opendental.chunks import (
    WATERMARK_OVERLAP_SECONDS,
    KeyRange,
    bounded_mark,
    clock_bound,
    keyset_after,
    keyset_order,
)
from clinicflow.opendental.replication.copy_plan import (
    OLD_SUFFIX,
    CopyPlan,
    ReplicationError,
    clear_watermark,
    plan_copy,
    write_watermark,
)
from clinicflow.opendental.replication.replica_encoding import (
    ChunkFile,
    _merge_sql,
    _typed_key,
    encoded_select_sql,
    export_and_load,
    load_file,
    prepare_streaming,
    row_layout,
    stream_to_file,
)
from clinicflow.opendental.replication.replica_reconcile import reconcile_replica
from clinicflow.opendental.streamed_values import keys_first_from
from clinicflow.opendental.tables.config import TableConfig


@dataclass
class ChunkResult:
    rows: int
    seconds: float
    reconciled: reconcile.ReconcileStats | None = None


def copy_range(src: MySQLServerLike, dst: MySQLServerLike, plan: CopyPlan, key_range: KeyRange | None) -> ChunkResult:
    """Copy one key range (or, with None, the whole table) into the shadow table."""
    started = time.perf_counter()
    pred = "1=1"
    params: list[Any] = []
    if key_range is not None:
        if plan.range_key is None:
            raise ReplicationError(f"table {plan.table!r}: key ranges need a single integer primary key")
        pred, params = key_range.predicate(plan.range_key, "mysql")
    with raw_connected(dst) as dst_conn:
        rows = export_and_load(src, dst_conn, plan.table, plan.columns, pred, params, plan.shadow, plan.primary_key)
    return ChunkResult(rows, time.perf_counter() - started)


def copy_keyset_full(src: MySQLServerLike, dst: MySQLServerLike, plan: CopyPlan) -> ChunkResult:
    """Full copy of a table whose key is not a single integer: keyset pages into the shadow."""
    started = time.perf_counter()
    total = 0
    after: list[Any] | None = None
    layout = row_layout(plan.table, plan.columns, plan.primary_key)
    with raw_connected(src, streaming=True) as src_conn, raw_connected(dst) as dst_conn:
        prepare_streaming(src_conn, layout)
        while True:
            pred, params = keyset_after(plan.primary_key, after, "mysql")
            sql = (
                encoded_select_sql(plan.table, plan.columns, plan.primary_key) + f" WHERE {pred} "
                f"ORDER BY {keyset_order(plan.primary_key, 'mysql')} LIMIT {int(plan.batch_size)}"
            )
            with ChunkFile(plan.table) as path:
                loader = _loader(dst_conn, path, plan.shadow, plan)
                rows, last = stream_to_file(src_conn, sql, params, path, len(plan.primary_key), layout, loader)
                if rows:
                    loader()
            total += rows
            if rows < plan.batch_size or last is None:
                break
            after = _typed_key(last, plan.primary_key, plan.columns)
    return ChunkResult(total, time.perf_counter() - started)


def _loader(dst_conn: Connection, path: str, target: str, plan: CopyPlan) -> Callable[[], int]:
    """LOAD DATA of the chunk file into ``target`` (called when the file is full and at the page's end)."""
    return lambda: load_file(dst_conn, path, target, plan.columns)


def swap_in(dst: MySQLServerLike, plan: CopyPlan) -> None:
    """Atomically replace the table with its shadow, then store the snapshot watermark."""
    with raw_connected(dst) as conn:
        t, shadow, old = (quote_ident(n, "mysql") for n in (plan.table, plan.shadow, plan.table + OLD_SUFFIX))
        with conn.cursor() as cur:
            cur.execute(f"ALTER TABLE {shadow} ENABLE KEYS")
            cur.execute(f"DROP TABLE IF EXISTS {old}")
            if table_exists(conn, plan.table):
                cur.execute(f"RENAME TABLE {t} TO {old}, {shadow} TO {t}")
                cur.execute(f"DROP TABLE {old}")
            else:
                cur.execute(f"RENAME TABLE {shadow} TO {t}")
        if plan.key_columns and plan.snapshot is not None:
            write_watermark(conn, plan.table, plan.key_columns, plan.snapshot, "full")
        else:
            clear_watermark(conn, plan.table)


def _bound_page(conn: Connection, plan: CopyPlan, pred: str, params: list[Any], lower: Any) -> tuple[str, list[Any]]:
    """Cap a keyset page at the watermark value ``batch_size`` rows ahead.

    ``ORDER BY watermark, key LIMIT n`` cannot be read in order from a
    one-column watermark index, so the server would sort every remaining row
    for every page. An index-only probe finds the watermark value ``n`` rows
    ahead; with it as an upper bound each page sorts about ``n`` rows (plus
    ties), and the keyset predicate still guarantees no row is skipped.
    """
    if len(plan.key_columns) < 2:
        return pred, params  # the key alone orders the page through its own index
    w = quote_ident(plan.key_columns[0], "mysql")
    where, probe_params = ("", []) if lower is None else (f"WHERE {w} >= %s", [lower])
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {w} FROM {quote_ident(plan.table, 'mysql')} {where} ORDER BY {w} "
            f"LIMIT 1 OFFSET {int(plan.batch_size)}",
            probe_params,
        )
        row = cur.fetchone()
        while cur.fetchone() is not None:  # drain the unbuffered result
            pass
    if row is None:
        return pred, params
    return f"{pred} AND {w} <= %s", [*params, catalog_text(row[0])]


def copy_incremental(src: MySQLServerLike, dst: MySQLServerLike, plan: CopyPlan) -> ChunkResult:
    """Copy rows after the stored watermark, page by page, advancing it after each merged page."""
    started = time.perf_counter()
    total = 0
    stage = plan.table + "__cf_stage"
    with raw_connected(src, streaming=True) as src_conn, raw_connected(dst) as dst_conn:
        with dst_conn.cursor() as cur:
            cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {quote_ident(stage, 'mysql')}")
            cur.execute(f"CREATE TEMPORARY TABLE {quote_ident(stage, 'mysql')} LIKE {quote_ident(plan.table, 'mysql')}")
        after = _typed_key(plan.start_after, plan.key_columns, plan.columns) if plan.start_after else None
        bound = _clock_bound(src_conn, plan)
        layout = row_layout(plan.table, plan.columns, plan.key_columns)
        prepare_streaming(src_conn, layout)
        first_page = True
        while True:
            if first_page and after is not None and plan.overlap_column:
                # Re-read the last second(s): see WATERMARK_OVERLAP_SECONDS.
                pred = (
                    f"{quote_ident(plan.overlap_column, 'mysql')} >= %s - INTERVAL {WATERMARK_OVERLAP_SECONDS} SECOND"
                )
                params: list[Any] = [after[0]]
            else:
                pred, params = keyset_after(plan.key_columns, after, "mysql")
            first_page = False
            pred, params = _bound_page(src_conn, plan, pred, params, None if after is None else after[0])
            order = f" ORDER BY {keyset_order(plan.key_columns, 'mysql')}"
            limit = f" LIMIT {int(plan.batch_size)}"
            from_sql = None
            if layout is not None:
                from_sql = keys_first_from(quote_ident(plan.table, "mysql"), plan.primary_key, pred, order + limit)
                pred = "TRUE"
            sql = encoded_select_sql(plan.table, plan.columns, plan.key_columns, from_sql)
            sql += f" WHERE {pred}{order}{limit}"
            with dst_conn.cursor() as cur:
                cur.execute(f"TRUNCATE TABLE {quote_ident(stage, 'mysql')}")
            with ChunkFile(plan.table) as path:
                loader = _loader(dst_conn, path, stage, plan)
                rows, last = stream_to_file(src_conn, sql, params, path, len(plan.key_columns), layout, loader)
                if rows:
                    loader()
                    with dst_conn.cursor() as cur:
                        cur.execute(_merge_sql(plan.table, stage, plan.columns))
            if rows and last is not None:
                # The page is merged: only now may the watermark move past it.
                write_watermark(dst_conn, plan.table, plan.key_columns, bounded_mark(last, bound), "incremental")
                after = _typed_key(last, plan.key_columns, plan.columns)
            total += rows
            if rows < plan.batch_size:
                break
        with dst_conn.cursor() as cur:
            cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {quote_ident(stage, 'mysql')}")
    return ChunkResult(total, time.perf_counter() - started)


def _clock_bound(src_conn: Connection, plan: CopyPlan) -> str | None:
    """The source's NOW() for a time watermark (see :func:`clinicflow.opendental.chunks.bounded_mark`)."""
    if not plan.overlap_column:
        return None
    first = next(c for c in plan.columns if c.name == plan.overlap_column)
    return clock_bound(src_conn, wall_clock=first.data_type == "datetime")


def sync_incremental(src: MySQLServerLike, dst: MySQLServerLike, plan: CopyPlan) -> ChunkResult:
    """The incremental copy, then the reconciliation of what a watermark cannot see (see :func:`reconcile_replica`)."""
    started = time.perf_counter()
    # A table CDC keeps current needs no watermark copy; the reconciliation stays as its safety net.
    result = ChunkResult(0, 0.0) if cdc_keeps_current(dst, plan.table) else copy_incremental(src, dst, plan)
    result.reconciled = reconcile_replica(src, dst, plan, plan.sweep)
    result.seconds = time.perf_counter() - started
    return result


def full_copy_units(plan: CopyPlan) -> list[KeyRange | None]:
    """The independent units of a full copy: key ranges, or one unit (None) for the whole table."""
    return list(plan.ranges) if plan.ranges else [None]


def copy_full_unit(src: MySQLServerLike, dst: MySQLServerLike, plan: CopyPlan, unit: KeyRange | None) -> ChunkResult:
    """Copy one unit of a full copy into the shadow table."""
    if unit is None and plan.primary_key and plan.range_key is None:
        return copy_keyset_full(src, dst, plan)  # composite or non-integer key: keyset pages
    return copy_range(src, dst, plan, unit)


def prepare_table(
    src: MySQLServerLike,
    dst: MySQLServerLike,
    table: str,
    config: TableConfig,
    *,
    full_refresh: bool = False,
    full_sweep: bool = False,
) -> CopyPlan:
    """Open connections and plan one table (see :func:`plan_copy`)."""
    with raw_connected(src) as src_conn, raw_connected(dst) as dst_conn:
        return plan_copy(src_conn, dst_conn, table, config, full_refresh=full_refresh, full_sweep=full_sweep)


def replicate_table_once(
    src: MySQLServerLike,
    dst: MySQLServerLike,
    table: str,
    config: TableConfig,
    *,
    full_refresh: bool = False,
    full_sweep: bool = False,
) -> dict[str, Any]:
    """Replicate one table sequentially without Prefect (tests, benches, debugging)."""
    started = time.perf_counter()
    plan = prepare_table(src, dst, table, config, full_refresh=full_refresh, full_sweep=full_sweep)
    reconciled = None
    if plan.mode == "unchanged":
        rows = 0
    elif plan.mode == "incremental":
        result = sync_incremental(src, dst, plan)
        rows, reconciled = result.rows, result.reconciled
    else:
        rows = sum(copy_full_unit(src, dst, plan, unit).rows for unit in full_copy_units(plan))
        swap_in(dst, plan)
    return {
        "table": table,
        "mode": plan.mode,
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "note": plan.note,
        "reconciled": reconciled,
    }
