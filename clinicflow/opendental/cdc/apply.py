"""Applying one batch of changed keys: the source's current rows for those keys replace the replica's, then raw's.

A row event says which key changed; the row itself is read again from the source through the nightly's own
encoding (``replica_encoding``) and from the replica through the nightly's COPY encoding and merge
(``copy_stream``, ``incremental_load``), so zero dates, NUL bytes, JSON, blobs and bits travel exactly as at night.
Re-reading makes applying a batch idempotent: a batch applied twice leaves the same rows, which is what lets
a killed run resume from the last position stored with the rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.mysql.catalog import CatalogColumn, read_table
from clinicflow.connectors.mysql.sessions import raw_connected
from clinicflow.connectors.protocols import MySQLServerLike, PostgresServerLike
from clinicflow.core.dbapi import Connection, Cursor, PgConnection, PgCursor
from clinicflow.core.sql import quote_ident, quote_list, quote_qualified, short_pg_ident
from clinicflow.opendental.cdc import state
from clinicflow.opendental.cdc.checks import BinlogPosition, CdcError
from clinicflow.opendental.replication.replica_columns import replica_columns
from clinicflow.opendental.replication.replica_encoding import export_and_load
from clinicflow.opendental.tables.config import TableConfig
from clinicflow.opendental.warehouse.copy_stream import stream_copy
from clinicflow.opendental.warehouse.incremental_load import _merge
from clinicflow.opendental.warehouse.load_plan import STATE_SCHEMA, LoadPlan, plan_load

Key = tuple[Any, ...]


class TableApplyError(CdcError):
    """One table of a batch could not be applied; the runner fails that table and applies the rest."""

    def __init__(self, table: str, leg: str, exc: BaseException) -> None:
        super().__init__(f"table {table!r}: {leg}: {type(exc).__name__}: {exc}")
        self.table = table


# Keys per IN list: one statement stays small whatever the batch.
KEYS_PER_STATEMENT = 1000


@dataclass
class ChangeBatch:
    """Changed keys per table since the last stored position, and the position that covers them."""

    keys: dict[str, set[Key]]
    position: BinlogPosition
    events: int
    last_event_at: int | None


@dataclass(frozen=True)
class TableShape:
    """What applying needs of one table; rebuilt after DDL."""

    table: str
    primary_key: tuple[str, ...]
    columns: tuple[CatalogColumn, ...]
    load_plan: LoadPlan


def table_shape(
    replica_conn: Connection,
    table: str,
    config: TableConfig,
    primary_key: Sequence[str],
    state_schema: str = STATE_SCHEMA,
) -> TableShape:
    """The replica's columns (the LOAD DATA list) and the raw load plan (the nightly's typemap)."""
    replica = read_table(replica_conn, table, where="replication")
    plan = plan_load(replica, config, state_schema=state_schema)
    return TableShape(table, tuple(primary_key), tuple(replica_columns(replica)), plan)


def _chunks(keys: set[Key]) -> Iterator[list[Key]]:
    ordered = sorted(keys, key=lambda k: tuple((v is None, str(type(v)), v) for v in k))
    for start in range(0, len(ordered), KEYS_PER_STATEMENT):
        yield ordered[start : start + KEYS_PER_STATEMENT]


def mysql_key_predicate(primary_key: Sequence[str], keys: Sequence[Key]) -> tuple[str, list[Any]]:
    """``pk IN (...)`` (or row constructors for a composite key) with parameters."""
    if len(primary_key) == 1:
        return (
            f"{quote_ident(primary_key[0], 'mysql')} IN (" + ", ".join(["%s"] * len(keys)) + ")",
            [k[0] for k in keys],
        )
    row = "(" + ", ".join(["%s"] * len(primary_key)) + ")"
    return (
        f"({quote_list(list(primary_key), 'mysql')}) IN (" + ", ".join([row] * len(keys)) + ")",
        [v for k in keys for v in k],
    )


def apply_replica(
    src: MySQLServerLike, dst_conn: Connection, shapes: dict[str, TableShape], batch: ChangeBatch, source: str
) -> None:
    """One replica transaction: for every changed key, the source's row (or none) replaces the replica's.

    The position is written in the same transaction (InnoDB replica tables; on a MyISAM replica the rows are
    written before the position, and re-applying after a kill rewrites the same rows).
    """
    with dst_conn.cursor() as cur:
        cur.execute("START TRANSACTION")
        try:
            for table, keys in sorted(batch.keys.items()):
                try:
                    _replace_keys(src, dst_conn, cur, shapes[table], keys)
                except Exception as exc:  # the runner fails this one table
                    raise TableApplyError(table, "replica", exc) from exc
            state.write_replica_position(cur, source, batch.position, batch.events, batch.last_event_at)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise


def _replace_keys(src: MySQLServerLike, dst_conn: Connection, cur: Cursor, shape: TableShape, keys: set[Key]) -> None:
    for chunk in _chunks(keys):
        pred, params = mysql_key_predicate(shape.primary_key, chunk)
        cur.execute(f"DELETE FROM {quote_ident(shape.table, 'mysql')} WHERE {pred}", params)
        # The nightly's export: large values streamed as bytes, memory bounded by the chunk file's bytes.
        export_and_load(src, dst_conn, shape.table, shape.columns, pred, params, shape.table, shape.primary_key)


def _pg_key_rows(plan: LoadPlan, keys: Sequence[Key]) -> tuple[str, list[Any]]:
    types = [plan.column(c).pg_type for c in plan.primary_key]
    row = "(" + ", ".join(f"%s::{t}" for t in types) + ")"
    return "VALUES " + ", ".join([row] * len(keys)), [v for k in keys for v in k]


def _merge_keys(replica_stream_conn: Connection, cur: PgCursor, plan: LoadPlan, keys: set[Key]) -> int:
    copied = 0
    temp = quote_ident(short_pg_ident(f"cf_cdc_{plan.table}"), "postgres")
    target = quote_qualified(plan.raw_schema, plan.table, "postgres")
    cur.execute(f"DROP TABLE IF EXISTS {temp}")
    cur.execute(f"CREATE TEMP TABLE {temp} (LIKE {target}) ON COMMIT DROP")
    for chunk in _chunks(keys):
        pred, params = mysql_key_predicate(plan.primary_key, chunk)
        copied += stream_copy(replica_stream_conn, cur, plan, temp, pred, params).rows
    _merge(cur, plan, temp)
    pk = quote_list(list(plan.primary_key), "postgres")
    for chunk in _chunks(keys):
        values, params = _pg_key_rows(plan, chunk)
        cur.execute(
            f"DELETE FROM {target} WHERE ({pk}) IN ({values}) AND ({pk}) NOT IN (SELECT {pk} FROM {temp})", params
        )
    return copied


def apply_raw(
    replica_stream_conn: Connection,
    pg_conn: PgConnection,
    shapes: dict[str, TableShape],
    batch: ChangeBatch,
    source: str,
    state_schema: str = STATE_SCHEMA,
) -> int:
    """One PostgreSQL transaction: the replica's rows for the changed keys merged into raw, vanished keys deleted.

    Returns the rows copied. ``replica_stream_conn``: ``raw_connected(replica, streaming=True, zone="server")``.
    """
    copied = 0
    try:
        with pg_conn.cursor() as cur:
            for table, keys in sorted(batch.keys.items()):
                try:
                    copied += _merge_keys(replica_stream_conn, cur, shapes[table].load_plan, keys)
                except Exception as exc:  # the runner fails this one table
                    raise TableApplyError(table, "raw", exc) from exc
            state.write_pg_position(cur, state_schema, source, batch.position)
        pg_conn.commit()  # rows and position together, or neither
    except BaseException:
        pg_conn.rollback()
        raise
    return copied


def apply_batch(
    src: MySQLServerLike,
    replica: MySQLServerLike,
    pg: PostgresServerLike,
    shapes: dict[str, TableShape],
    batch: ChangeBatch,
    source: str,
    *,
    apply_to_replica: bool = True,
    state_schema: str = STATE_SCHEMA,
) -> int:
    """The replica leg (unless it already holds the batch), then the raw leg; returns rows copied into raw."""
    if apply_to_replica:
        with raw_connected(replica) as dst_conn:
            apply_replica(src, dst_conn, shapes, batch, source)
    with raw_connected(replica, streaming=True, zone="server") as stream_conn, connected(pg) as pg_conn:
        return apply_raw(stream_conn, pg_conn, shapes, batch, source, state_schema)
