"""The CDC loop of one source: checks, a snapshot position, then batches of binlog changes until stopped."""

from __future__ import annotations

import contextlib
import functools
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.mysql.catalog import find_table
from clinicflow.connectors.mysql.sessions import raw_connected
from clinicflow.connectors.protocols import MySQLServerLike, PostgresServerLike
from clinicflow.core.logs import get_logger
from clinicflow.opendental.cdc import state
from clinicflow.opendental.cdc.apply import ChangeBatch, TableApplyError, TableShape, apply_batch, table_shape
from clinicflow.opendental.cdc.checks import (
    BinlogPosition,
    CdcError,
    check_position_available,
    require_cdc_ready,
    snapshot_position,
)
from clinicflow.opendental.cdc.stream import Commit, Ddl, RowChange, read_events
from clinicflow.opendental.replication.copy_plan import ensure_database
from clinicflow.opendental.replication.replica_copy import replicate_table_once
from clinicflow.opendental.tables.config import TablesConfig
from clinicflow.opendental.tables.typemap import UnsupportedTypeError, is_compatible_change, map_column
from clinicflow.opendental.warehouse.load_steps import LoadOptions, load_table_once, setup_target


@dataclass(frozen=True)
class CdcOptions:
    server_id: int
    tables: list[str] | None = None
    batch_events: int = 5000  # rows changed before a batch is applied
    batch_seconds: float = 1.0  # or this long after its first change
    poll_seconds: float = 1.0  # wait between reads of a caught-up binlog
    retention_hours: float = 24.0  # the binlog must be kept at least this long (the catch-up window)
    until_caught_up: bool = False  # stop once the binlog's end (as at that moment) is applied
    max_seconds: float | None = None
    resnapshot: bool = False  # forget the stored position: a fresh snapshot and full copy


@dataclass
class CdcReport:
    source: str
    position: BinlogPosition | None = None
    events: int = 0
    batches: int = 0
    rows: int = 0
    snapshot: bool = False
    stopped_by_request: bool = False
    failed_tables: dict[str, str] = field(default_factory=dict)


def default_server_id(replica: MySQLServerLike) -> int:
    """A stable server id per replica database, away from the small ids servers use (--server-id overrides)."""
    return 1_000_000 + zlib.crc32(f"{replica.host}:{replica.port}/{replica.database}".encode()) % 1_000_000


class CdcRunner:
    """One source's CDC (plain library code: the CLI, the task and the tests call :meth:`run`)."""

    def __init__(
        self,
        src: MySQLServerLike,
        replica: MySQLServerLike,
        pg: PostgresServerLike,
        config: TablesConfig,
        options: CdcOptions,
    ) -> None:
        self.src, self.replica, self.pg, self.config, self.options = src, replica, pg, config, options
        self.source = state.source_id(src)
        self.report = CdcReport(self.source)
        self.shapes: dict[str, TableShape] = {}
        self.ordinals: dict[str, list[int]] = {}
        self.log = get_logger()
        self.stop_requested = False  # set from a signal handler: the loop ends after the current read

    # -- setup -------------------------------------------------------------------------------------------------
    def _fail_table(self, ctl: Any, table: str, reason: str) -> None:
        self.log.error("CDC: %s (the nightly copies it)", reason)
        state.set_table(ctl, self.source, table, "failed", reason)
        self.report.failed_tables[table] = reason
        self.shapes.pop(table, None)
        self.ordinals.pop(table, None)

    def _watch(self, ctl: Any, table: str) -> None:
        """Key positions and shapes of a table CDC keeps current."""
        with raw_connected(self.src) as src_conn:
            source = find_table(src_conn, table)
        pk = list(source.primary_key) if source is not None else []
        positions = {c.name: c.ordinal for c in source.columns} if source is not None else {}
        self.ordinals[table] = [positions[c] - 1 for c in pk]  # binlog rows: every column, generated ones too
        self.shapes[table] = table_shape(ctl, table, self.config.effective(table), pk)
        state.set_table(ctl, self.source, table, "active")

    def _copy_table(self, ctl: Any, table: str, why: str) -> None:
        """A full copy of one table through the nightly (replica, then raw), after which CDC keeps it current."""
        self.log.info("CDC: full copy of %r (%s)", table, why)
        config = self.config.effective(table)
        replicate_table_once(self.src, self.replica, table, config, full_refresh=True)
        outcome = load_table_once(self.replica, self.pg, table, config, LoadOptions(full_refresh=True))
        if outcome.status == "failed":
            self._fail_table(ctl, table, f"table {table!r}: full copy for CDC failed: {outcome.error}")
            return
        self._watch(ctl, table)

    def _choose_tables(self, ctl: Any) -> list[str]:
        names = self.options.tables or sorted(self.config.tables)
        unknown = [t for t in names if t not in self.config.tables]
        if unknown:
            raise CdcError(f"tables not in tables.yml: {', '.join(unknown)}")
        chosen = []
        with raw_connected(self.src) as src_conn:
            for table in names:
                found = find_table(src_conn, table)
                if found is None:
                    self._fail_table(ctl, table, f"table {table!r}: not in the source database")
                elif not found.primary_key:
                    self._fail_table(ctl, table, f"table {table!r}: no primary key, CDC cannot name its rows")
                else:
                    chosen.append(table)
        return chosen

    def _start_position(self, ctl: Any, tables: list[str]) -> BinlogPosition:
        with connected(self.pg) as pg_conn:
            state.ensure_pg_state(pg_conn, LoadOptions().state_schema)
            stored = [
                state.read_replica_position(ctl, self.source),
                state.read_pg_position(pg_conn, LoadOptions().state_schema, self.source),
            ]
        known = state.table_statuses(ctl, self.source)
        if not self.options.resnapshot and all(p is not None for p in stored):
            position = min((p for p in stored if p is not None), key=BinlogPosition.key)
            with raw_connected(self.src) as src_conn:
                check_position_available(src_conn, position)
            for table in tables:
                if known.get(table, ("",))[0] == "active":
                    self._watch(ctl, table)
                else:
                    self._copy_table(ctl, table, "new to CDC")  # copied at the stream's current point
            return position
        # A consistent point first, then the copies: changes after it are replayed over the copies.
        position = snapshot_position(self.src)
        self.report.snapshot = True
        for table in tables:
            self._copy_table(ctl, table, "snapshot")
        self._apply(ctl, ChangeBatch({}, position, 0, None))
        return position

    # -- the loop ----------------------------------------------------------------------------------------------
    def _apply(self, ctl: Any, batch: ChangeBatch) -> None:
        """Apply a batch; a table that fails is failed alone and the batch applied without it."""
        while True:
            try:
                self.report.rows += apply_batch(self.src, self.replica, self.pg, self.shapes, batch, self.source)
                break
            except TableApplyError as exc:
                self._fail_table(ctl, exc.table, str(exc))
                batch.keys.pop(exc.table, None)
        self.report.position = batch.position
        self.report.events += batch.events
        self.report.batches += 1 if batch.events else 0

    def _on_ddl(self, ctl: Any, event: Ddl) -> None:
        """A shape change: compatible ones (added, dropped, widened columns) re-copy the table, others fail it."""
        table = event.table
        kind = event.statement.split(None, 1)[0].upper()
        with raw_connected(self.src) as src_conn:
            source = find_table(src_conn, table)
        if source is None:
            self._fail_table(ctl, table, f"table {table!r}: dropped or renamed at the source ({kind})")
            return
        if source.primary_key != self.shapes[table].primary_key:
            self._fail_table(
                ctl,
                table,
                f"table {table!r}: its primary key changed ({kind}); "
                f"run `clinicflow nightly --full-refresh --tables {table}`",
            )
            return
        new = {c.name: c for c in source.columns}
        booleans = set(self.config.effective(table).boolean_columns)
        problems = []
        for col in self.shapes[table].load_plan.columns:
            if col.name in new:
                try:
                    mapped = map_column(new[col.name], boolean=col.name in booleans)
                except UnsupportedTypeError as exc:
                    problems.append(str(exc))
                    continue
                if not is_compatible_change(col.pg_type, mapped.pg_type):
                    problems.append(
                        f"column {col.name!r} changed from {col.pg_type} to {mapped.pg_type}, which is not a widening"
                    )
        if problems:
            self._fail_table(
                ctl,
                table,
                f"table {table!r}: {kind} in the binlog: "
                + "; ".join(problems)
                + f"; run `clinicflow nightly --full-refresh --tables {table}`",
            )
            return
        self._copy_table(ctl, table, f"{kind} in the binlog")

    def _pump(self, ctl: Any, position: BinlogPosition) -> tuple[BinlogPosition, bool]:
        """Read from ``position`` until a batch is due, apply it; returns the new position and whether more is left.

        The dump is closed before the batch is applied (see :func:`read_events`); the next read reopens it.
        """
        pending: dict[str, set[tuple[Any, ...]]] = {}
        events, first_at, last_ts = 0, 0.0, None
        commit = position
        ddl: Ddl | None = None
        more = False
        with connected(
            functools.partial(
                read_events,
                self.src,
                server_id=self.options.server_id,
                start=position,
                key_ordinals=dict(self.ordinals),
            )
        ) as reader:
            for event in reader:
                if isinstance(event, RowChange):
                    if event.table not in self.shapes:
                        continue
                    if not events:
                        first_at = time.monotonic()
                    pending.setdefault(event.table, set()).update(event.keys)
                    events += event.rows
                    last_ts = event.timestamp
                elif isinstance(event, Commit):
                    commit = event.position
                    if events and (
                        events >= self.options.batch_events or time.monotonic() - first_at >= self.options.batch_seconds
                    ):
                        more = True
                        break
                elif isinstance(event, Ddl) and event.table in self.shapes:
                    ddl, more = event, True  # applied after the rows before it, then read on after it
                    break
        if events or commit != position:
            self._apply(ctl, ChangeBatch(pending, commit, events, last_ts))
        if ddl is not None:
            self._on_ddl(ctl, ddl)
            self._apply(ctl, ChangeBatch({}, ddl.position, 0, None))
            commit = ddl.position
        return commit, more

    def run(self) -> CdcReport:
        """Checks, start position (snapshot when none is stored), then batches until stopped or caught up."""
        opts = self.options
        require_cdc_ready(self.src, server_id=opts.server_id, retention_hours=opts.retention_hours)
        ensure_database(self.replica)
        setup_target(self.pg)
        with raw_connected(self.replica) as ctl:
            try:
                state.ensure_replica_state(ctl)
                state.set_status(ctl, self.source, "starting", server_id=opts.server_id, clear_stop=True)
                position = self._start_position(ctl, self._choose_tables(ctl))
                state.set_status(ctl, self.source, "running")
                started = time.monotonic()
                while True:
                    position, more = self._pump(ctl, position)
                    if more and not self.stop_requested:
                        continue
                    if opts.until_caught_up:
                        break
                    if opts.max_seconds is not None and time.monotonic() - started >= opts.max_seconds:
                        break
                    if state.heartbeat(ctl, self.source) or self.stop_requested:  # one UPDATE and SELECT per poll
                        self.report.stopped_by_request = True
                        break
                    time.sleep(opts.poll_seconds)
                self.report.position = position
                state.set_status(ctl, self.source, "stopped")
            except BaseException as exc:
                with contextlib.suppress(Exception):  # the original error is what matters
                    state.set_status(ctl, self.source, "failed", message=f"{type(exc).__name__}: {exc}")
                raise
        return self.report
