"""Reconciliation of the replica with the source: ranges whose rows differ are found and copied again."""

from __future__ import annotations

from collections.abc import Sequence

from clinicflow.connectors.mysql.catalog import CatalogColumn
from clinicflow.connectors.mysql.sessions import raw_connected
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.core.sql import quote_ident
from clinicflow.opendental import reconcile
from clinicflow.opendental.chunks import (
    KeyRange,
)
from clinicflow.opendental.replication.copy_plan import CopyPlan
from clinicflow.opendental.replication.replica_encoding import (
    _merge_sql,
    export_and_load,
)
from clinicflow.opendental.sweep import Sweep
from clinicflow.opendental.tables.typemap import is_streamed

FIX_STAGE = "cf_fix_stage"  # a session's temporary table: no clash between tables or runs


def _row_text_sql(columns: Sequence[CatalogColumn]) -> str:
    """The row's bytes as one text, NULL flags last (both sides are MySQL tables of one definition)."""
    values = []
    for col in columns:
        q = quote_ident(col.name, "mysql")
        if col.is_bit:
            values.append(f"CAST({q} + 0 AS CHAR)")
        elif is_streamed(col.data_type):
            # The server hashes the stored bytes (a copy of a large value would pass max_allowed_packet);
            # CRC32, as the row: the row's sum is 32-bit anyway, and it costs a fifth of an MD5 on blobs.
            values.append(f"CRC32({q})")
        elif col.data_type == "float":
            values.append(f"CAST(CAST({q} AS DOUBLE) AS BINARY)")
        elif col.charset:
            # Character values as their stored bytes: one binary argument makes CONCAT_WS binary, so no
            # column is converted to another's character set (lossy) or collides on collations.
            values.append(f"CAST({q} AS BINARY)")
        else:
            # Numbers and dates print the same ASCII either way; a CAST each cost a fifth of the hash.
            values.append(q)
    flags = [f"ISNULL({quote_ident(c.name, 'mysql')})" for c in columns if c.nullable]
    if flags:
        values.append("CONCAT(" + ", ".join(flags) + ")")
    return "CONCAT_WS(X'1F', " + ", ".join(values) + ")"


def reconcile_side(conn: Connection, plan: CopyPlan) -> reconcile.Side:
    """The aggregate SQL of ``plan.table`` on one MySQL server (source or replica)."""
    by_name = {c.name: c for c in plan.columns}
    first = by_name[plan.primary_key[0]]
    range_column = first.name if first.is_integer else None
    if len(plan.primary_key) == 1 and first.is_integer:
        key_hash = quote_ident(first.name, "mysql")
    else:
        key_text = (
            "CONCAT_WS(X'1F', "
            + ", ".join(f"CAST({quote_ident(k, 'mysql')} AS BINARY)" for k in plan.primary_key)
            + ")"
        )
        key_hash = reconcile.md5_60_sql(key_text, "mysql")
    # CRC32 (as pt-table-checksum): both sides are MySQL, and it costs half an MD5; a changed
    # ~100-row range keeps its sum with odds of 1 in 4 billion, and its row count and key sum too.
    return reconcile.Side(
        conn,
        "mysql",
        quote_ident(plan.table, "mysql"),
        range_column,
        key_hash,
        f"CRC32({_row_text_sql(plan.columns)})",
        key_unique=len(plan.primary_key) == 1 and first.is_integer,
    )


def reconcile_replica(
    src: MySQLServerLike, dst: MySQLServerLike, plan: CopyPlan, sweep: Sweep
) -> reconcile.ReconcileStats:
    """Make the replica's table equal to the source's: deleted rows removed, missing and changed rows copied.

    Catches what a watermark cannot: hard deletes, rows inserted with an old
    change stamp, rows updated without touching it. Ranges whose key or row
    aggregates differ (:mod:`clinicflow.opendental.reconcile`) are re-read from the source
    into a temporary table and merged; rows of those ranges the source no
    longer has are deleted. Safe to interrupt: the next run compares again.
    """
    stats = reconcile.ReconcileStats(swept=sweep.describe())
    if not plan.primary_key or not sweep.enabled:
        return stats
    with raw_connected(src) as src_conn, raw_connected(dst) as dst_conn:
        source, target = reconcile_side(src_conn, plan), reconcile_side(dst_conn, plan)
        comparison = reconcile.compare(source, target, sweep)
        stats.ranges, stats.ranges_hashed = len(comparison.ranges), comparison.hashed
        stats.swept = comparison.sweep.describe()
        stats.boundaries = [r.lower for r in comparison.ranges[1:] if r.lower is not None]
        for group in reconcile.group_ranges(comparison.differing, comparison.source, plan.batch_size):
            stats.add(_resync_ranges(src, dst_conn, plan, source.key_column, group))
    return stats


def _resync_ranges(
    src: MySQLServerLike, dst_conn: Connection, plan: CopyPlan, range_column: str | None, ranges: Sequence[KeyRange]
) -> reconcile.ReconcileStats:
    pred, params = reconcile.ranges_predicate(ranges, range_column, "mysql")
    t, stage = quote_ident(plan.table, "mysql"), quote_ident(FIX_STAGE, "mysql")
    cols = ", ".join(quote_ident(k, "mysql") for k in plan.primary_key)
    pk = f"({cols})"
    out = reconcile.ReconcileStats(ranges_recopied=len(ranges))
    with dst_conn.cursor() as cur:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {stage}")
        cur.execute(f"CREATE TEMPORARY TABLE {stage} LIKE {t}")
    try:
        export_and_load(src, dst_conn, plan.table, plan.columns, pred, params, FIX_STAGE, plan.primary_key)
        with dst_conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {stage} WHERE {pk} NOT IN (SELECT {cols} FROM {t} WHERE {pred})", params)
            out.rows_missing = int(cur.fetchone()[0])
            cur.execute(f"DELETE FROM {t} WHERE {pred} AND {pk} NOT IN (SELECT {cols} FROM {stage})", params)
            out.rows_deleted = max(cur.rowcount, 0)
            cur.execute(_merge_sql(plan.table, FIX_STAGE, plan.columns))
            # ON DUPLICATE KEY UPDATE counts a new row once and a changed row twice.
            out.rows_changed = max(cur.rowcount - out.rows_missing, 0) // 2
    finally:
        with dst_conn.cursor() as cur:
            cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {stage}")
    return out
