"""Incremental load: keyset chunks COPied into a temporary table and merged.

The watermark advances in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clinicflow.connectors.mysql.sessions import catalog_text
from clinicflow.connectors.postgres.copy_source import COPY_READ_SIZE, CopySource
from clinicflow.core.dbapi import Connection, PgConnection, PgCursor
from clinicflow.core.sql import quote_ident, quote_list, quote_qualified, short_pg_ident
from clinicflow.opendental.chunks import WATERMARK_OVERLAP_SECONDS, bounded_mark, clock_bound
from clinicflow.opendental.streamed_values import keys_first_from
from clinicflow.opendental.tables.typemap import (
    Kind,
)
from clinicflow.opendental.warehouse.copy_encoding import (
    ConversionCounts,
    check_booleans,
    copy_column_names,
    copy_items_sql,
    copy_row_layout,
    read_counters,
    reset_counters,
)
from clinicflow.opendental.warehouse.copy_stream import _copy_error, add_streamed_counts, streamed_reader
from clinicflow.opendental.warehouse.full_load import _nul_note
from clinicflow.opendental.warehouse.load_errors import LoadError
from clinicflow.opendental.warehouse.load_plan import LoadPlan
from clinicflow.opendental.warehouse.load_state import _write_state


@dataclass
class IncrementalStats:
    rows_read: int = 0
    rows_changed: int = 0
    bytes: int = 0
    chunks: int = 0
    watermark: tuple[str, ...] | None = None
    conversions: ConversionCounts = field(default_factory=ConversionCounts)


def _keyset_params(plan: LoadPlan, values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for name, value in zip(plan.keyset_columns, values, strict=False):
        text = catalog_text(value)
        # Integers compared with a string literal would be compared as doubles in MySQL.
        out.append(int(text) if text is not None and plan.column(name).kind is Kind.integer else text)
    return out


def merge_sql(plan: LoadPlan, source: str) -> str:
    """INSERT ... ON CONFLICT (pk) DO UPDATE only where a value changed."""
    target = quote_qualified(plan.raw_schema, plan.table, "postgres")
    cols = quote_list(plan.column_names, "postgres")
    pk = quote_list(list(plan.primary_key), "postgres")
    others = [c for c in plan.column_names if c not in plan.primary_key]
    if not others:
        return f"INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {source} ON CONFLICT ({pk}) DO NOTHING"
    sets = ", ".join(f"{quote_ident(c, 'postgres')} = EXCLUDED.{quote_ident(c, 'postgres')}" for c in others)
    old = ", ".join(f"t.{quote_ident(c, 'postgres')}" for c in others)
    new = ", ".join(f"EXCLUDED.{quote_ident(c, 'postgres')}" for c in others)
    return (
        f"INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {source} ON CONFLICT ({pk}) DO UPDATE SET {sets} "
        f"WHERE ROW({old}) IS DISTINCT FROM ROW({new})"
    )


def _merge(pg_cur: PgCursor, plan: LoadPlan, temp: str) -> None:
    """Run :func:`merge_sql`; two rows of one batch with one key in PostgreSQL fail the table, saying why."""
    import psycopg2

    try:
        pg_cur.execute(merge_sql(plan, temp))
    except psycopg2.errors.CardinalityViolation:
        # Unique in MySQL, equal in PostgreSQL: for text key columns only removed NUL bytes do that
        # (case and trailing spaces already compare equal in MySQL's collations).
        text_keys = [c for c in plan.primary_key if plan.column(c).kind is Kind.text]
        raise LoadError(
            f"table {plan.table!r}: two rows of one batch have the same primary key in PostgreSQL "
            f"({', '.join(plan.primary_key)}){_nul_note(plan.primary_key, text_keys)}"
        ) from None


def _clock_bound(mysql_conn: Connection, plan: LoadPlan) -> str | None:
    """The replica's NOW() for a time watermark (see :func:`clinicflow.opendental.chunks.bounded_mark`)."""
    first = plan.column(plan.keyset_columns[0])
    if first.kind not in (Kind.datetime, Kind.instant) or len(plan.keyset_columns) < 2:
        return None
    return clock_bound(mysql_conn, wall_clock=first.kind is Kind.datetime)


def load_incremental(
    mysql_stream_conn: Connection,
    pg_conn: PgConnection,
    plan: LoadPlan,
    watermark: Sequence[str] | None,
    keyset_predicate: Any,
) -> IncrementalStats:
    """Merge rows after ``watermark`` into raw, ``plan.batch_size`` rows per transaction.

    ``keyset_predicate(columns, values, dialect)`` returns (sql, params) for
    "(columns...) > (values...)" (the chunk planner's keyset predicate).
    One ordered MySQL query streams the whole range; each segment of
    batch_size rows is COPied into a temporary table, merged, and the
    watermark (the segment's last keyset values) is written in the same
    transaction.
    """
    if not plan.primary_key or not plan.incremental_columns:
        raise LoadError(f"table {plan.table!r}: an incremental load needs a primary key and incremental_columns")
    stats = IncrementalStats(watermark=tuple(watermark) if watermark is not None else None)
    keyset = list(plan.keyset_columns)
    first = plan.column(keyset[0])
    if watermark is None:
        predicate, params = "1=1", []
    elif first.kind in (Kind.datetime, Kind.instant) and len(keyset) > 1:
        # A row changed in the same second as the watermark but with a smaller
        # key sorts before it; re-reading the last second(s) catches it, and
        # the merge makes re-reading harmless (same rule as the replication).
        predicate = f"{quote_ident(first.name, 'mysql')} >= %s - INTERVAL {WATERMARK_OVERLAP_SECONDS} SECOND"
        params = [watermark[0]]
    else:
        predicate, params = keyset_predicate(keyset, _keyset_params(plan, watermark), "mysql")
        params = list(params)
    bound = _clock_bound(mysql_stream_conn, plan)
    check_booleans(mysql_stream_conn, plan, predicate, params)
    reset_counters(mysql_stream_conn, plan)
    temp = quote_ident(short_pg_ident(f"cf_merge_{plan.table}"), "postgres")
    layout = copy_row_layout(plan, keyset)
    source = quote_ident(plan.table, "mysql")
    if layout is not None:
        source, predicate = keys_first_from(source, plan.primary_key, predicate), "TRUE"
    select = (
        f"SELECT {copy_items_sql(plan)}, "
        f"{quote_list(keyset, 'mysql')} FROM {source} WHERE {predicate} "
        f"ORDER BY {quote_list(keyset, 'mysql')}"
    )
    copy_sql = f"COPY {temp} ({quote_list(copy_column_names(plan), 'postgres')}) FROM STDIN"
    with pg_conn.cursor() as pg_cur:
        pg_cur.execute(f"DROP TABLE IF EXISTS {temp}")
        pg_cur.execute(
            f"CREATE TEMP TABLE {temp} (LIKE {quote_qualified(plan.raw_schema, plan.table, 'postgres')}) "
            "ON COMMIT DELETE ROWS"
        )
        pg_conn.commit()
        my_cur = mysql_stream_conn.cursor()
        my_cur.execute(select, tuple(params))
        reader = streamed_reader(my_cur, layout, segment_rows=plan.batch_size)
        try:
            while True:
                segment = CopySource(reader, plan.batch_size)
                try:
                    pg_cur.copy_expert(copy_sql, segment, size=COPY_READ_SIZE)
                except Exception as exc:  # noqa: BLE001 - re-raised, named by _copy_error
                    raise _copy_error(plan, exc) from None  # the driver's DETAIL may hold row values
                if segment.rows == 0:
                    pg_conn.rollback()
                    break
                _merge(pg_cur, plan, temp)
                changed = pg_cur.rowcount
                new_mark = tuple(bounded_mark([catalog_text(v) or "" for v in segment.last_keyset or ()], bound) or ())
                _write_state(pg_cur, plan, "incremental", new_mark, None)
                pg_conn.commit()  # rows and watermark together, or neither
                stats.rows_read += segment.rows
                stats.rows_changed += max(changed, 0)
                stats.bytes += segment.bytes
                stats.chunks += 1
                stats.watermark = new_mark
                if reader.finished:
                    break
        except BaseException:
            reader.close()
            pg_conn.rollback()
            raise
        my_cur.close()
        pg_cur.execute(f"DROP TABLE IF EXISTS {temp}")
        pg_conn.commit()
    stats.conversions = read_counters(mysql_stream_conn, plan)
    add_streamed_counts(stats.conversions, layout)
    return stats
