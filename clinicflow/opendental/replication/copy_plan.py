"""How one table is copied from the source into the replica: the copy plan, replica state and watermarks."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from clinicflow.connectors.connections import connected
from clinicflow.connectors.mysql.catalog import CatalogColumn, find_table, read_table
from clinicflow.connectors.mysql.checksums import checksum_table
from clinicflow.connectors.mysql.sessions import RAW_CONVERSIONS, catalog_name, catalog_text, raw_connected
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.sql import quote_ident, validate_table_name
from clinicflow.opendental.chunks import (
    KeyRange,
    bounded_mark,
    clock_bound,
    keyset_columns,
    keyset_max,
    ranges_from_boundaries,
    walk_boundaries,
)
from clinicflow.opendental.replication.replica_columns import column_changes, replica_columns
from clinicflow.opendental.sweep import Sweep, sweep_for
from clinicflow.opendental.tables.config import TableConfig

# How a table is copied tonight: a full copy swapped in, incremental pages merged, or nothing to copy.
CopyMode = Literal["full", "incremental", "unchanged"]

STATE_TABLE = "_clinicflow_replication_state"


SHADOW_SUFFIX = "__cf_shadow"


OLD_SUFFIX = "__cf_old"


TIME_TYPES = frozenset({"timestamp", "datetime"})


class ReplicationError(ClinicflowError):
    """A table could not be replicated; the message names the table."""


@dataclass
class CopyPlan:
    """What one run does to one table; passed between tasks."""

    table: str
    mode: CopyMode
    columns: list[CatalogColumn]
    key_columns: list[str]  # incremental keyset order: watermark columns, then key
    batch_size: int
    primary_key: list[str] = field(default_factory=list)
    range_key: str | None = None  # single integer key: full copies run in parallel ranges
    ranges: list[KeyRange] = field(default_factory=list)
    snapshot: list[str | None] | None = None  # watermark to store after a full copy
    start_after: list[str] | None = None  # incremental: resume point
    overlap_column: str | None = None  # incremental: timestamp column re-read with overlap
    note: str = ""
    sweep: Sweep = field(default_factory=Sweep)  # incremental: tonight's reconciliation

    @property
    def shadow(self) -> str:
        return self.table + SHADOW_SUFFIX


def ensure_database(server: MySQLServerLike) -> None:
    """Create the server's database if it does not exist (first run against an empty replica)."""
    with connected(server, database="", conv=RAW_CONVERSIONS, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(server.database, 'mysql')} CHARACTER SET utf8mb3")


def drop_leftover_tables(server: MySQLServerLike) -> list[str]:
    """Drop ``*__cf_shadow`` / ``*__cf_old`` tables a killed run left in the replica; returns their names.

    A run creates its shadows afresh, so any found before the run starts belong to a run that died
    (runs of one replica never overlap: the deployments and the CronJob allow one at a time).
    """
    with raw_connected(server) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "AND (TABLE_NAME LIKE %s OR TABLE_NAME LIKE %s) ORDER BY TABLE_NAME",
            ("%" + SHADOW_SUFFIX.replace("_", "\\_"), "%" + OLD_SUFFIX.replace("_", "\\_")),
        )
        names = [catalog_name(row[0]) for row in cur.fetchall()]
        for name in names:
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(name, 'mysql')}")
    return names


def replica_create_table_sql(src_conn: Connection, table: str, new_name: str) -> str:
    """The source's own DDL for ``table``, renamed to ``new_name``."""
    with src_conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {quote_ident(table, 'mysql')}")
        ddl = catalog_name(cur.fetchone()[1])
    prefix = f"CREATE TABLE {quote_ident(table, 'mysql')}"
    if not ddl.startswith(prefix):
        raise ReplicationError(f"table {table!r}: unexpected SHOW CREATE TABLE output")
    return f"CREATE TABLE {quote_ident(new_name, 'mysql')}" + ddl[len(prefix) :]


def ensure_state_table(conn: Connection) -> None:
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


def read_watermark(conn: Connection, table: str, key_columns: Sequence[str]) -> list[str] | None:
    """The stored resume point, or None when there is none or the key columns changed."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT key_columns, watermark FROM {quote_ident(STATE_TABLE, 'mysql')} WHERE table_name = %s", (table,)
        )
        row = cur.fetchone()
    if row is None or row[1] is None:
        return None
    if json.loads(catalog_name(row[0])) != list(key_columns):
        return None
    watermark: list[str] = json.loads(catalog_name(row[1]))
    return watermark


def write_watermark(
    conn: Connection, table: str, key_columns: Sequence[str], watermark: Sequence[str | None] | None, mode: CopyMode
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"REPLACE INTO {quote_ident(STATE_TABLE, 'mysql')} (table_name, key_columns, watermark, mode, updated_at) "
            "VALUES (%s, %s, %s, %s, UTC_TIMESTAMP())",
            (table, json.dumps(list(key_columns)), None if watermark is None else json.dumps(list(watermark)), mode),
        )


def clear_watermark(conn: Connection, table: str) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {quote_ident(STATE_TABLE, 'mysql')} WHERE table_name = %s", (table,))


_INT_RANK = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "bigint": 5}
_TEXT_RANK = {"tinytext": 1, "text": 2, "mediumtext": 3, "longtext": 4}
_BLOB_RANK = {"tinyblob": 1, "blob": 2, "mediumblob": 3, "longblob": 4}
_LENGTH = re.compile(r"^\w+\((\d+)(?:,(\d+))?\)")


def _charset(collation: str) -> str:
    return collation.split("_", 1)[0]


def is_widening(old: CatalogColumn, new: CatalogColumn) -> bool:
    """Whether every value of ``old`` is the same value in ``new`` (an ALTER ... MODIFY keeps every row)."""
    if old.nullable and not new.nullable:
        return False
    # utf8mb3 → utf8mb4 keeps every character and its bytes; the comparison rules stay the same family.
    if old.collation != new.collation and not (
        _charset(old.collation) == "utf8mb3"
        and _charset(new.collation) == "utf8mb4"
        and old.collation.split("_", 1)[1:] == new.collation.split("_", 1)[1:]
    ):
        return False
    if old.column_type == new.column_type:
        return True
    unsigned_old, unsigned_new = "unsigned" in old.column_type, "unsigned" in new.column_type
    for ranks in (_INT_RANK, _TEXT_RANK, _BLOB_RANK):
        if old.data_type in ranks and new.data_type in ranks:
            return ranks[new.data_type] >= ranks[old.data_type] and unsigned_old == unsigned_new
    old_args, new_args = _LENGTH.match(old.column_type), _LENGTH.match(new.column_type)
    if old.data_type == new.data_type and old_args and new_args:
        if old.data_type in ("varchar", "varbinary"):
            return int(new_args.group(1)) >= int(old_args.group(1))
        if old.data_type == "decimal" and unsigned_old == unsigned_new:
            old_p, old_s = int(old_args.group(1)), int(old_args.group(2) or 0)
            new_p, new_s = int(new_args.group(1)), int(new_args.group(2) or 0)
            return new_s >= old_s and new_p - new_s >= old_p - old_s
    return False


def widen_in_place(
    src_conn: Connection,
    dst_conn: Connection,
    table: str,
    source: Sequence[CatalogColumn],
    replica: Sequence[CatalogColumn],
) -> bool:
    """ALTER the replica's columns to the source's definitions when every change is a widening; False otherwise.

    Same columns in the same order, each the same or wider (integers, varchar, decimal, text and blob
    sizes, utf8mb3 → utf8mb4): the replica's rows stay equal to the source's, so the table goes on
    incrementally instead of being copied again. Anything else is a full copy with the new DDL.
    """
    if [c.name for c in source] != [c.name for c in replica]:
        return False
    old = {c.name: c for c in replica}
    changed = [c for c in source if column_changes([c], [old[c.name]])]
    if not changed or not all(is_widening(old[c.name], c) for c in changed):
        return False
    definitions = _column_definitions(replica_create_table_sql(src_conn, table, table))
    alters = []
    for col in changed:
        definition = definitions.get(col.name)
        if definition is None:
            return False
        alters.append(f"MODIFY {definition}")
    with dst_conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {quote_ident(table, 'mysql')} " + ", ".join(alters))
    return True


def _column_definitions(ddl: str) -> dict[str, str]:
    """Column name → its definition line in SHOW CREATE TABLE output."""
    out = {}
    for line in ddl.splitlines()[1:]:
        text = line.strip().rstrip(",")
        if text.startswith("`"):
            end = 1
            while True:
                end = text.index("`", end)
                if text[end : end + 2] == "``":
                    end += 2
                    continue
                break
            out[text[1:end].replace("``", "`")] = text
    return out


def plan_copy(
    src_conn: Connection,
    dst_conn: Connection,
    table: str,
    config: TableConfig,
    *,
    full_refresh: bool = False,
    full_sweep: bool = False,
) -> CopyPlan:
    """Decide how ``table`` is copied this run and prepare the target; no row is copied here."""
    validate_table_name(table)
    source = read_table(src_conn, table)
    columns = replica_columns(source)
    names = {c.name for c in columns}
    pk = list(source.primary_key)
    configured_pk = list(config.primary_key)
    if configured_pk and configured_pk != pk:
        raise ReplicationError(
            f"table {table!r}: tables.yml primary_key {configured_pk} but the source has {pk or 'none'}"
        )
    for col in config.incremental_columns:
        if col not in names:
            raise ReplicationError(f"table {table!r}: incremental column {col!r} is not in the source table")
    ensure_state_table(dst_conn)
    note = ""
    key_cols: list[str] = []
    replica = find_table(dst_conn, table)
    exists = replica is not None
    replica_cols = replica_columns(replica) if replica is not None else []
    changes = column_changes(columns, replica_cols) if exists else []
    if changes and not full_refresh and widen_in_place(src_conn, dst_conn, table, columns, replica_cols):
        note = f"source columns widened ({'; '.join(changes)}): replica altered in place"
        changes = []
    if changes:
        # The source's columns changed: a fresh full copy takes the new DDL.
        full_refresh = True
        note = f"source columns changed ({'; '.join(changes)}): full copy with the new definition"
    if not pk:
        mode: CopyMode = "full"
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
            return CopyPlan(
                table,
                "unchanged",
                columns,
                key_cols,
                config.batch_size,
                primary_key=pk,
                note="unchanged since the last copy (CHECKSUM TABLE equal on both sides): not copied",
            )
    plan = CopyPlan(
        table,
        mode,
        columns,
        key_cols,
        config.batch_size,
        primary_key=pk,
        note=note,
        sweep=sweep_for(config, full_sweep=full_sweep),
    )
    if mode == "incremental":
        plan.start_after = read_watermark(dst_conn, table, key_cols)
        first = next(c for c in columns if c.name == key_cols[0])
        if first.data_type in TIME_TYPES and len(key_cols) > 1:
            plan.overlap_column = first.name
        return plan
    # Full copy: fresh shadow from the source's DDL, ranges, watermark snapshot.
    with dst_conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {quote_ident(plan.shadow, 'mysql')}")
        cur.execute(replica_create_table_sql(src_conn, table, plan.shadow))
        # MyISAM updates secondary indexes row by row on a non-empty table;
        # with keys disabled it rebuilds them once, by sorting, at ENABLE KEYS.
        cur.execute(f"ALTER TABLE {quote_ident(plan.shadow, 'mysql')} DISABLE KEYS")
    if len(pk) == 1 and next(c for c in columns if c.name == pk[0]).is_integer:
        plan.range_key = pk[0]
        boundaries = walk_boundaries(src_conn, quote_ident(table, "mysql"), pk[0], config.batch_size, "mysql")
        plan.ranges = ranges_from_boundaries(boundaries)
    if config.is_incremental and key_cols:
        row = keyset_max(src_conn, table, key_cols)
        plan.snapshot = [catalog_text(v) for v in row] if row else None
        first = next(c for c in columns if c.name == key_cols[0])
        if first.data_type in TIME_TYPES and len(key_cols) > 1:
            plan.snapshot = bounded_mark(plan.snapshot, clock_bound(src_conn, wall_clock=first.data_type == "datetime"))
    return plan
