"""MySQL → MySQL replication: the plain logic behind ``replicate_tables``.

Fast path (chosen by measurement, see docs/replication.md): the *source
server* encodes each row into ``LOAD DATA``'s text format with one
``CONCAT_WS`` expression, the client reads one column per row with pymysql's
unbuffered cursor and no type conversion, writes the chunk to a temporary
file, and the replica loads it with ``LOAD DATA LOCAL INFILE ... CHARACTER SET
binary``. Python does no per-value work, and bytes arrive exactly as stored.

Modes per table:

* ``full``: copy into a shadow table, then one atomic ``RENAME TABLE`` swap;
  readers never see a half-copied table. Integer-keyed tables are copied in
  parallel key ranges. The watermark snapshot is taken *before* the copy, so
  rows changed during it are picked up by the next incremental run.
* ``incremental``: keyset pages over ``(watermark..., key...)`` after the
  stored watermark, each page loaded into a temporary stage and merged with
  ``INSERT ... ON DUPLICATE KEY UPDATE``; the watermark row is written only
  after its page is merged, so a kill at any point resumes with nothing lost
  (the page is read again) and nothing duplicated (the merge is an upsert).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pymysql.converters

from blocks.databases import MySQLServer
from clinicflow.chunks import (INTEGER_TYPES, KeyRange, keyset_after, keyset_columns, keyset_max, keyset_order,
                              ranges_from_boundaries, walk_boundaries)
from clinicflow import mysql_client, reconcile
from clinicflow.config import TableConfig
from clinicflow.sql import quote_ident, validate_table_name

STATE_TABLE = "_clinicflow_replication_state"
SHADOW_SUFFIX = "__cf_shadow"
OLD_SUFFIX = "__cf_old"
# Timestamp watermarks are re-read this far back on each run: a row updated
# in the same second as the stored watermark but with a smaller key would
# otherwise sort before it and be missed. Re-reading is harmless (upsert).
WATERMARK_OVERLAP_SECONDS = 1
TIME_TYPES = frozenset({"timestamp", "datetime"})
# Types whose text form never holds a tab, newline, backslash or NUL: their
# LOAD DATA field needs no escaping. Skipping the four REPLACE calls for them
# halved the source server's encoding time on procedurelog (6.3 s -> 3.2 s per
# million rows, 36 columns, most of them numbers and dates).
PLAIN_TEXT_TYPES = INTEGER_TYPES | frozenset({
    "float", "double", "decimal", "date", "datetime", "timestamp", "time", "year", "bit"})

# Encoders kept (pymysql needs them to send parameters), decoders dropped:
# values arrive as the server's raw bytes.
RAW_CONVERSIONS = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


class ReplicationError(RuntimeError):
    """A table could not be replicated; the message names the table."""


class SourceTableMissing(ReplicationError):
    pass


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # e.g. "bigint"
    column_type: str  # e.g. "bigint(20) unsigned"
    nullable: bool = True
    collation: str = ""  # text columns: their bytes depend on it (latin1 vs utf8)

    @property
    def is_bit(self) -> bool:
        return self.data_type == "bit"

    @property
    def is_integer(self) -> bool:
        return self.data_type in INTEGER_TYPES


@dataclass
class TablePlan:
    """What one run does to one table; passed between tasks."""

    table: str
    mode: str  # "full" | "incremental" | "unchanged" (nothing to copy)
    columns: list[Column]
    key_columns: list[str]  # incremental keyset order: watermark columns, then key
    batch_size: int
    primary_key: list[str] = field(default_factory=list)
    range_key: str | None = None  # single integer key: full copies run in parallel ranges
    ranges: list[KeyRange] = field(default_factory=list)
    snapshot: list[str] | None = None  # watermark to store after a full copy
    start_after: list[str] | None = None  # incremental: resume point
    overlap_column: str | None = None  # incremental: timestamp column re-read with overlap
    note: str = ""
    sweep: reconcile.Sweep = field(default_factory=reconcile.Sweep)  # incremental: tonight's reconciliation

    @property
    def shadow(self) -> str:
        return self.table + SHADOW_SUFFIX


def ensure_database(server: MySQLServer) -> None:
    """Create the server's database if it does not exist (first run against an empty replica)."""
    conn = server.connect(database="", conv=RAW_CONVERSIONS, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(server.database, 'mysql')} CHARACTER SET utf8mb3")
    finally:
        conn.close()


def drop_leftover_tables(server: MySQLServer) -> list[str]:
    """Drop ``*__cf_shadow`` / ``*__cf_old`` tables a killed run left in the replica; returns their names.

    A run creates its shadows afresh, so any found before the run starts belong to a run that died
    (runs of one replica never overlap: the deployments and the CronJob allow one at a time).
    """
    conn = connect(server)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                        "AND (TABLE_NAME LIKE %s OR TABLE_NAME LIKE %s) ORDER BY TABLE_NAME",
                        ("%" + SHADOW_SUFFIX.replace("_", "\\_"), "%" + OLD_SUFFIX.replace("_", "\\_")))
            names = [_text(row[0]) for row in cur.fetchall()]
            for name in names:
                cur.execute(f"DROP TABLE IF EXISTS {quote_ident(name, 'mysql')}")
    finally:
        conn.close()
    return names


def connect(server: MySQLServer, *, streaming: bool = False) -> Any:
    """A connection for copying: raw bytes out, permissive sql_mode, UTC session."""
    return server.connect(streaming=streaming, conv=RAW_CONVERSIONS, autocommit=True)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


# ---------------------------------------------------------------- schema

def source_columns(conn: Any, table: str) -> list[Column]:
    """Copyable columns of ``table`` in the connection's database, in order."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, EXTRA, IS_NULLABLE, COALESCE(COLLATION_NAME, '') "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (table,),
        )
        rows = cur.fetchall()
    if not rows:
        raise SourceTableMissing(f"table {table!r}: not found in the source database")
    # Generated columns are computed by the replica itself.
    return [Column(_text(n), _text(d).lower(), _text(t).lower(), _text(nullable).upper() == "YES", _text(coll).lower())
            for n, d, t, extra, nullable, coll in rows if "GENERATED" not in _text(extra).upper()]


def column_changes(source: Sequence[Column], replica: Sequence[Column]) -> list[str]:
    """How the replica's columns differ from the source's (empty: same names, order, types, nullability, collation).

    Any difference means the replica's DDL is stale: an incremental copy into
    it could truncate a widened value or store text in the old charset.
    """
    old = {c.name: c for c in replica}
    new = {c.name: c for c in source}
    changes = [f"{name} added" for name in new if name not in old]
    changes += [f"{name} removed" for name in old if name not in new]
    for name, col in new.items():
        before = old.get(name)
        if before is None:
            continue
        if before.column_type != col.column_type:
            changes.append(f"{name} {before.column_type} -> {col.column_type}")
        if before.nullable != col.nullable:
            changes.append(f"{name} {'NULL' if before.nullable else 'NOT NULL'} -> {'NULL' if col.nullable else 'NOT NULL'}")
        if before.collation != col.collation:
            changes.append(f"{name} collation {before.collation or 'none'} -> {col.collation or 'none'}")
    if not changes and [c.name for c in source] != [c.name for c in replica]:
        changes.append("column order")
    return changes


def source_primary_key(conn: Any, table: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (table,),
        )
        return [_text(r[0]) for r in cur.fetchall()]


def create_table_sql(src_conn: Any, table: str, new_name: str) -> str:
    """The source's own DDL for ``table``, renamed to ``new_name``."""
    with src_conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {quote_ident(table, 'mysql')}")
        ddl = _text(cur.fetchone()[1])
    prefix = f"CREATE TABLE {quote_ident(table, 'mysql')}"
    if not ddl.startswith(prefix):
        raise ReplicationError(f"table {table!r}: unexpected SHOW CREATE TABLE output")
    return f"CREATE TABLE {quote_ident(new_name, 'mysql')}" + ddl[len(prefix):]


def table_exists(conn: Any, table: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", (table,))
        return cur.fetchone() is not None


# ---------------------------------------------------------------- state

def ensure_state_table(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(STATE_TABLE, 'mysql')} ("
            " table_name varchar(64) NOT NULL PRIMARY KEY,"
            " key_columns text NOT NULL,"
            " watermark text NULL,"
            " mode varchar(16) NOT NULL,"
            " updated_at datetime NOT NULL"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )


def read_watermark(conn: Any, table: str, key_columns: Sequence[str]) -> list[str] | None:
    """The stored resume point, or None when there is none or the key columns changed."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT key_columns, watermark FROM {quote_ident(STATE_TABLE, 'mysql')} WHERE table_name = %s", (table,))
        row = cur.fetchone()
    if row is None or row[1] is None:
        return None
    if json.loads(_text(row[0])) != list(key_columns):
        return None
    return json.loads(_text(row[1]))


def write_watermark(conn: Any, table: str, key_columns: Sequence[str], watermark: Sequence[str] | None, mode: str) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"REPLACE INTO {quote_ident(STATE_TABLE, 'mysql')} (table_name, key_columns, watermark, mode, updated_at) "
            "VALUES (%s, %s, %s, %s, UTC_TIMESTAMP())",
            (table, json.dumps(list(key_columns)), None if watermark is None else json.dumps(list(watermark)), mode),
        )


def clear_watermark(conn: Any, table: str) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {quote_ident(STATE_TABLE, 'mysql')} WHERE table_name = %s", (table,))


# ---------------------------------------------------------------- encoding

def encode_column_sql(col: Column) -> str:
    """SQL turning one column into its LOAD DATA text field (escaped; NULL as \\N)."""
    q = quote_ident(col.name, "mysql")
    if col.is_bit:
        raw = f"CAST({q} + 0 AS CHAR)"  # loaded through a variable, see load_columns_clause
    elif col.data_type == "float":
        # FLOAT prints with 6 digits; its exact double value reloads to the same float.
        raw = f"CAST(CAST({q} AS DOUBLE) AS BINARY)"
    else:
        raw = f"CAST({q} AS BINARY)"
    if col.data_type in PLAIN_TEXT_TYPES:
        escaped = raw
    else:
        escaped = f"REPLACE(REPLACE(REPLACE(REPLACE({raw}, '\\\\', '\\\\\\\\'), '\\t', '\\\\t'), '\\n', '\\\\n'), CHAR(0), '\\\\0')"
    # CONCAT_WS skips NULL arguments, so a nullable column must become \N
    # explicitly; a NOT NULL column cannot be NULL and skips the IFNULL.
    return f"IFNULL({escaped}, '\\\\N')" if col.nullable else escaped


def encoded_select_sql(table: str, columns: Sequence[Column], extra: Sequence[str] = ()) -> str:
    """``SELECT <encoded line>[, extra key columns] FROM table`` (WHERE/ORDER added by callers)."""
    line = "CONCAT_WS('\\t', " + ", ".join(encode_column_sql(c) for c in columns) + ")"
    extras = "".join(", " + quote_ident(c, "mysql") for c in extra)
    return f"SELECT {line}{extras} FROM {quote_ident(table, 'mysql')}"


def load_columns_clause(columns: Sequence[Column]) -> str:
    """Column list for LOAD DATA; BIT columns go through a variable (LOAD DATA cannot parse b'...')."""
    names, sets = [], []
    for i, col in enumerate(columns):
        if col.is_bit:
            names.append(f"@bit{i}")
            sets.append(f"{quote_ident(col.name, 'mysql')} = CAST(@bit{i} AS UNSIGNED)")
        else:
            names.append(quote_ident(col.name, "mysql"))
    clause = "(" + ", ".join(names) + ")"
    if sets:
        clause += " SET " + ", ".join(sets)
    return clause


def load_file(dst_conn: Any, path: str, target: str, columns: Sequence[Column]) -> int:
    """LOAD DATA LOCAL INFILE ``path`` into ``target``; return rows loaded."""
    with dst_conn.cursor() as cur:
        cur.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote_ident(target, 'mysql')} CHARACTER SET binary "
            f"{load_columns_clause(columns)}",
            (path,),
        )
        return int(cur.rowcount)


def stream_to_file(src_stream_conn: Any, sql: str, params: Sequence[Any], path: str, key_count: int) -> tuple[int, list[str] | None]:
    """Run an encoded SELECT and write its lines to ``path``; return rows and the last row's key values."""
    rows = 0
    last: tuple[Any, ...] | None = None
    with src_stream_conn.cursor() as cur, open(path, "wb", buffering=1 << 20) as out:
        cur.execute(sql, list(params))
        write = out.write
        for row in cur:
            write(row[0])
            write(b"\n")
            rows += 1
            last = row
    key = [_text(v) for v in last[1:1 + key_count]] if (last is not None and key_count) else None
    return rows, key


class ChunkFile:
    """A temporary file for one chunk (bounded by the chunk size) that has no name on disk.

    It is unlinked as soon as it is created and used through ``/proc/self/fd/N`` (this process
    writes it and pymysql reads it for ``LOAD DATA LOCAL``), so a killed run leaves no rows behind.
    """

    def __init__(self, table: str) -> None:
        fd, name = tempfile.mkstemp(prefix=f"cf_{table}_", suffix=".tsv")
        os.unlink(name)
        self._fd = fd
        self.path = f"/proc/self/fd/{fd}"

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def _typed_key(values: Sequence[str], key_columns: Sequence[str], columns: Sequence[Column]) -> list[Any]:
    # Integers go as Python ints: compared with a string, MySQL would use
    # doubles and lose precision above 2**53.
    types = {c.name: c for c in columns}
    return [int(v) if types[name].is_integer else v for name, v in zip(key_columns, values)]


# ---------------------------------------------------------------- planning

def plan_table(src_conn: Any, dst_conn: Any, table: str, config: TableConfig, *, full_refresh: bool = False,
               full_sweep: bool = False) -> TablePlan:
    """Decide how ``table`` is copied this run and prepare the target; no row is copied here."""
    validate_table_name(table)
    columns = source_columns(src_conn, table)
    names = {c.name for c in columns}
    pk = source_primary_key(src_conn, table)
    configured_pk = list(config.primary_key)
    if configured_pk and configured_pk != pk:
        raise ReplicationError(f"table {table!r}: tables.yml primary_key {configured_pk} but the source has {pk or 'none'}")
    for col in config.incremental_columns:
        if col not in names:
            raise ReplicationError(f"table {table!r}: incremental column {col!r} is not in the source table")
    ensure_state_table(dst_conn)
    note = ""
    key_cols: list[str] = []
    exists = table_exists(dst_conn, table)
    changes = column_changes(columns, source_columns(dst_conn, table)) if exists else []
    if changes:
        # The source's columns changed: a fresh full copy takes the new DDL.
        full_refresh = True
        note = f"source columns changed ({'; '.join(changes)}): full copy with the new definition"
    if not pk:
        mode = "full"
        note = note or "no primary key: copied fully"
    else:
        key_cols = keyset_columns(config.incremental_columns, pk) if config.is_incremental else list(pk)
        watermark = read_watermark(dst_conn, table, key_cols) if (exists and config.is_incremental) else None
        mode = "incremental" if (config.is_incremental and watermark is not None and not full_refresh) else "full"
    if mode == "full" and exists and not full_refresh and not (pk and config.is_incremental):
        # A table copied fully every night (full_table, or no key) that did not change
        # since the last copy is left as it is: a quiet night rewrote ~440 small tables.
        source_sum = checksum_table(src_conn, table)
        if source_sum is not None and source_sum == checksum_table(dst_conn, table):
            return TablePlan(table, "unchanged", columns, key_cols, config.batch_size, primary_key=pk,
                             note="unchanged since the last copy (CHECKSUM TABLE equal on both sides): not copied")
    plan = TablePlan(table, mode, columns, key_cols, config.batch_size, primary_key=pk, note=note,
                     sweep=reconcile.sweep_for(config, full_sweep=full_sweep))
    if mode == "incremental":
        plan.start_after = read_watermark(dst_conn, table, key_cols)
        first = next(c for c in columns if c.name == key_cols[0])
        if first.data_type in TIME_TYPES and len(key_cols) > 1:
            plan.overlap_column = first.name
        return plan
    # Full copy: fresh shadow from the source's DDL, ranges, watermark snapshot.
    with dst_conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {quote_ident(plan.shadow, 'mysql')}")
        cur.execute(create_table_sql(src_conn, table, plan.shadow))
        # MyISAM updates secondary indexes row by row on a non-empty table;
        # with keys disabled it rebuilds them once, by sorting, at ENABLE KEYS.
        cur.execute(f"ALTER TABLE {quote_ident(plan.shadow, 'mysql')} DISABLE KEYS")
    if len(pk) == 1 and next(c for c in columns if c.name == pk[0]).is_integer:
        plan.range_key = pk[0]
        boundaries = walk_boundaries(src_conn, quote_ident(table, "mysql"), pk[0], config.batch_size, "mysql")
        plan.ranges = ranges_from_boundaries(boundaries)
    if config.is_incremental and key_cols:
        row = keyset_max(src_conn, table, key_cols)
        plan.snapshot = [_text(v) for v in row] if row else None
    return plan


# ---------------------------------------------------------------- copying

@dataclass
class ChunkResult:
    rows: int
    seconds: float
    reconciled: reconcile.ReconcileStats | None = None


def copy_range(src: MySQLServer, dst: MySQLServer, plan: TablePlan, key_range: KeyRange | None) -> ChunkResult:
    """Copy one key range (or, with None, the whole table) into the shadow table."""
    started = time.perf_counter()
    sql = encoded_select_sql(plan.table, plan.columns)
    params: list[Any] = []
    if key_range is not None:
        if plan.range_key is None:
            raise ReplicationError(f"table {plan.table!r}: key ranges need a single integer primary key")
        pred, params = key_range.predicate(plan.range_key, "mysql")
        sql += f" WHERE {pred}"
    with ChunkFile(plan.table) as path:
        has_rows = export_to_file(src, sql, params, path)
        rows = 0
        if has_rows:
            dst_conn = connect(dst)
            try:
                rows = load_file(dst_conn, path, plan.shadow, plan.columns)
            finally:
                dst_conn.close()
    return ChunkResult(rows, time.perf_counter() - started)


def export_to_file(src: MySQLServer, sql: str, params: Sequence[Any], path: str) -> bool:
    """Write the encoded lines of ``sql`` to ``path``; True when there was at least one row."""
    if mysql_client.client_binary():
        # The C client moves the encoded lines (see clinicflow.mysql_client).
        with open(path, "wb") as out:
            mysql_client.export_query(src, mysql_client.inline_params(sql, list(params)), out)
        return os.path.getsize(path) > 0
    src_conn = connect(src, streaming=True)
    try:
        return stream_to_file(src_conn, sql, params, path, 0)[0] > 0
    finally:
        src_conn.close()


def copy_keyset_full(src: MySQLServer, dst: MySQLServer, plan: TablePlan) -> ChunkResult:
    """Full copy of a table whose key is not a single integer: keyset pages into the shadow."""
    started = time.perf_counter()
    total = 0
    after: list[Any] | None = None
    src_conn, dst_conn = connect(src, streaming=True), connect(dst)
    try:
        while True:
            pred, params = keyset_after(plan.primary_key, after, "mysql")
            sql = (encoded_select_sql(plan.table, plan.columns, plan.primary_key) + f" WHERE {pred} "
                   f"ORDER BY {keyset_order(plan.primary_key, 'mysql')} LIMIT {int(plan.batch_size)}")
            with ChunkFile(plan.table) as path:
                rows, last = stream_to_file(src_conn, sql, params, path, len(plan.primary_key))
                if rows:
                    load_file(dst_conn, path, plan.shadow, plan.columns)
            total += rows
            if rows < plan.batch_size or last is None:
                break
            after = _typed_key(last, plan.primary_key, plan.columns)
    finally:
        src_conn.close()
        dst_conn.close()
    return ChunkResult(total, time.perf_counter() - started)


def swap_in(dst: MySQLServer, plan: TablePlan) -> None:
    """Atomically replace the table with its shadow, then store the snapshot watermark."""
    conn = connect(dst)
    try:
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
    finally:
        conn.close()


def _merge_sql(table: str, stage: str, columns: Sequence[Column]) -> str:
    cols = ", ".join(quote_ident(c.name, "mysql") for c in columns)
    updates = ", ".join(f"{quote_ident(c.name, 'mysql')} = VALUES({quote_ident(c.name, 'mysql')})" for c in columns)
    return (f"INSERT INTO {quote_ident(table, 'mysql')} ({cols}) SELECT {cols} FROM {quote_ident(stage, 'mysql')} "
            f"ON DUPLICATE KEY UPDATE {updates}")


def _bound_page(conn: Any, plan: TablePlan, pred: str, params: list[Any], lower: Any) -> tuple[str, list[Any]]:
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
        cur.execute(f"SELECT {w} FROM {quote_ident(plan.table, 'mysql')} {where} ORDER BY {w} "
                    f"LIMIT 1 OFFSET {int(plan.batch_size)}", probe_params)
        row = cur.fetchone()
        while cur.fetchone() is not None:  # drain the unbuffered result
            pass
    if row is None:
        return pred, params
    return f"{pred} AND {w} <= %s", params + [_text(row[0])]


def copy_incremental(src: MySQLServer, dst: MySQLServer, plan: TablePlan) -> ChunkResult:
    """Copy rows after the stored watermark, page by page, advancing it after each merged page."""
    started = time.perf_counter()
    total = 0
    stage = plan.table + "__cf_stage"
    src_conn, dst_conn = connect(src, streaming=True), connect(dst)
    try:
        with dst_conn.cursor() as cur:
            cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {quote_ident(stage, 'mysql')}")
            cur.execute(f"CREATE TEMPORARY TABLE {quote_ident(stage, 'mysql')} LIKE {quote_ident(plan.table, 'mysql')}")
        after = _typed_key(plan.start_after, plan.key_columns, plan.columns) if plan.start_after else None
        first_page = True
        while True:
            if first_page and after is not None and plan.overlap_column:
                # Re-read the last second(s): see WATERMARK_OVERLAP_SECONDS.
                pred = f"{quote_ident(plan.overlap_column, 'mysql')} >= %s - INTERVAL {WATERMARK_OVERLAP_SECONDS} SECOND"
                params: list[Any] = [after[0]]
            else:
                pred, params = keyset_after(plan.key_columns, after, "mysql")
            first_page = False
            pred, params = _bound_page(src_conn, plan, pred, params, None if after is None else after[0])
            sql = (encoded_select_sql(plan.table, plan.columns, plan.key_columns) + f" WHERE {pred} "
                   f"ORDER BY {keyset_order(plan.key_columns, 'mysql')} LIMIT {int(plan.batch_size)}")
            with ChunkFile(plan.table) as path:
                rows, last = stream_to_file(src_conn, sql, params, path, len(plan.key_columns))
                if rows:
                    with dst_conn.cursor() as cur:
                        cur.execute(f"TRUNCATE TABLE {quote_ident(stage, 'mysql')}")
                    load_file(dst_conn, path, stage, plan.columns)
                    with dst_conn.cursor() as cur:
                        cur.execute(_merge_sql(plan.table, stage, plan.columns))
            if rows and last is not None:
                # The page is merged: only now may the watermark move past it.
                write_watermark(dst_conn, plan.table, plan.key_columns, last, "incremental")
                after = _typed_key(last, plan.key_columns, plan.columns)
            total += rows
            if rows < plan.batch_size:
                break
        with dst_conn.cursor() as cur:
            cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {quote_ident(stage, 'mysql')}")
    finally:
        src_conn.close()
        dst_conn.close()
    return ChunkResult(total, time.perf_counter() - started)


def sync_incremental(src: MySQLServer, dst: MySQLServer, plan: TablePlan) -> ChunkResult:
    """The incremental copy, then the reconciliation of what a watermark cannot see (see :func:`reconcile_replica`)."""
    started = time.perf_counter()
    result = copy_incremental(src, dst, plan)
    result.reconciled = reconcile_replica(src, dst, plan, plan.sweep)
    result.seconds = time.perf_counter() - started
    return result


def checksum_table(conn: Any, table: str) -> str | None:
    """The server's ``CHECKSUM TABLE`` of ``table`` as text; None when it gives none (no such table).

    Instant where the engine keeps a live checksum, else one scan of the table.
    It depends on the engine and row format as well as the rows, so it is only
    compared between tables made from one definition: unequal sums for equal
    rows cost a copy, never a skipped change.
    """
    with conn.cursor() as cur:
        cur.execute(f"CHECKSUM TABLE {quote_ident(table, 'mysql')}")
        row = cur.fetchone()
    return None if row is None or row[1] is None else _text(row[1])


# ---------------------------------------------------------------- reconciliation (source -> replica)

FIX_STAGE = "cf_fix_stage"  # a session's temporary table: no clash between tables or runs


def _row_text_sql(columns: Sequence[Column]) -> str:
    """The row's bytes as one text, NULL flags last (both sides are MySQL tables of one definition)."""
    values = []
    for col in columns:
        q = quote_ident(col.name, "mysql")
        if col.is_bit:
            values.append(f"CAST({q} + 0 AS CHAR)")
        elif col.data_type == "float":
            values.append(f"CAST(CAST({q} AS DOUBLE) AS BINARY)")
        else:
            values.append(f"CAST({q} AS BINARY)")
    flags = [f"ISNULL({quote_ident(c.name, 'mysql')})" for c in columns if c.nullable]
    if flags:
        values.append("CONCAT(" + ", ".join(flags) + ")")
    return "CONCAT_WS(X'1F', " + ", ".join(values) + ")"


def reconcile_side(conn: Any, plan: TablePlan) -> reconcile.Side:
    """The aggregate SQL of ``plan.table`` on one MySQL server (source or replica)."""
    by_name = {c.name: c for c in plan.columns}
    first = by_name[plan.primary_key[0]]
    range_column = first.name if first.is_integer else None
    if len(plan.primary_key) == 1 and first.is_integer:
        key_hash = quote_ident(first.name, "mysql")
    else:
        key_text = "CONCAT_WS(X'1F', " + ", ".join(f"CAST({quote_ident(k, 'mysql')} AS BINARY)"
                                                    for k in plan.primary_key) + ")"
        key_hash = reconcile.md5_60_sql(key_text, "mysql")
    # CRC32 (as pt-table-checksum): both sides are MySQL, and it costs half an MD5; a changed
    # ~100-row range keeps its sum with odds of 1 in 4 billion, and its row count and key sum too.
    return reconcile.Side(conn, "mysql", quote_ident(plan.table, "mysql"), range_column, key_hash,
                          f"CRC32({_row_text_sql(plan.columns)})",
                          key_unique=len(plan.primary_key) == 1 and first.is_integer)


def reconcile_replica(src: MySQLServer, dst: MySQLServer, plan: TablePlan, sweep: reconcile.Sweep) -> reconcile.ReconcileStats:
    """Make the replica's table equal to the source's: deleted rows removed, missing and changed rows copied.

    Catches what a watermark cannot: hard deletes, rows inserted with an old
    change stamp, rows updated without touching it. Ranges whose key or row
    aggregates differ (:mod:`clinicflow.reconcile`) are re-read from the source
    into a temporary table and merged; rows of those ranges the source no
    longer has are deleted. Safe to interrupt: the next run compares again.
    """
    stats = reconcile.ReconcileStats(swept=sweep.describe())
    if not plan.primary_key or not sweep.enabled:
        return stats
    src_conn, dst_conn = connect(src), connect(dst)
    try:
        source, target = reconcile_side(src_conn, plan), reconcile_side(dst_conn, plan)
        comparison = reconcile.compare(source, target, sweep)
        stats.ranges, stats.ranges_hashed = len(comparison.ranges), comparison.hashed
        stats.boundaries = [r.lower for r in comparison.ranges[1:] if r.lower is not None]
        for group in reconcile.group_ranges(comparison.differing, comparison.source, plan.batch_size):
            stats.add(_resync_ranges(src, dst_conn, plan, source.key_column, group))
    finally:
        src_conn.close()
        dst_conn.close()
    return stats


def _resync_ranges(src: MySQLServer, dst_conn: Any, plan: TablePlan, range_column: str | None,
                   ranges: Sequence[KeyRange]) -> reconcile.ReconcileStats:
    pred, params = reconcile.ranges_predicate(ranges, range_column, "mysql")
    t, stage = quote_ident(plan.table, "mysql"), quote_ident(FIX_STAGE, "mysql")
    cols = ", ".join(quote_ident(k, "mysql") for k in plan.primary_key)
    pk = f"({cols})"
    out = reconcile.ReconcileStats(ranges_recopied=len(ranges))
    with dst_conn.cursor() as cur:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {stage}")
        cur.execute(f"CREATE TEMPORARY TABLE {stage} LIKE {t}")
    try:
        with ChunkFile(plan.table) as path:
            if export_to_file(src, encoded_select_sql(plan.table, plan.columns) + f" WHERE {pred}", params, path):
                load_file(dst_conn, path, FIX_STAGE, plan.columns)
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


def table_checksum(server: MySQLServer, table: str) -> tuple[int, str]:
    """Row count and an order-independent checksum of every column's bytes (for verification and tests)."""
    conn = connect(server)
    try:
        cols = source_columns(conn, table)
        # HEX of the text/bytes form: exact for doubles too (HEX of a number drops its fraction).
        parts = [f"IFNULL(HEX(CAST({quote_ident(c.name, 'mysql')}{' + 0' if c.is_bit else ''} AS BINARY)), 'N')" for c in cols]
        expr = "MD5(CONCAT_WS('|', " + ", ".join(parts) + "))"
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*), COALESCE(SUM(CAST(CONV(SUBSTRING({expr}, 1, 15), 16, 10) AS UNSIGNED)), 0), "
                        f"COALESCE(BIT_XOR(CAST(CONV(SUBSTRING({expr}, 16, 15), 16, 10) AS UNSIGNED)), 0) "
                        f"FROM {quote_ident(table, 'mysql')}")
            count, s, x = cur.fetchone()
        return int(count), f"{_text(s)}:{_text(x)}"
    finally:
        conn.close()


def full_copy_units(plan: TablePlan) -> list[KeyRange | None]:
    """The independent units of a full copy: key ranges, or one unit (None) for the whole table."""
    return list(plan.ranges) if plan.ranges else [None]


def copy_full_unit(src: MySQLServer, dst: MySQLServer, plan: TablePlan, unit: KeyRange | None) -> ChunkResult:
    """Copy one unit of a full copy into the shadow table."""
    if unit is None and plan.primary_key and plan.range_key is None:
        return copy_keyset_full(src, dst, plan)  # composite or non-integer key: keyset pages
    return copy_range(src, dst, plan, unit)


def prepare_table(src: MySQLServer, dst: MySQLServer, table: str, config: TableConfig, *, full_refresh: bool = False,
                  full_sweep: bool = False) -> TablePlan:
    """Open connections and plan one table (see :func:`plan_table`)."""
    src_conn, dst_conn = connect(src), connect(dst)
    try:
        return plan_table(src_conn, dst_conn, table, config, full_refresh=full_refresh, full_sweep=full_sweep)
    finally:
        src_conn.close()
        dst_conn.close()


def replicate_table_once(src: MySQLServer, dst: MySQLServer, table: str, config: TableConfig, *, full_refresh: bool = False,
                         full_sweep: bool = False) -> dict[str, Any]:
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
    return {"table": table, "mode": plan.mode, "rows": rows, "seconds": time.perf_counter() - started, "note": plan.note,
            "reconciled": reconciled}
