"""One COPY of a table's rows from the replica into PostgreSQL: through pymysql or the MariaDB C client."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clinicflow.connectors.mysql import client
from clinicflow.connectors.postgres.copy_source import COPY_READ_SIZE, CopySource, LineReader
from clinicflow.core.dbapi import Connection, Cursor, PgCursor
from clinicflow.core.errors import one_line
from clinicflow.core.sql import quote_list
from clinicflow.opendental.streamed_values import BLOCK_BYTES, RowLayout, carry_error
from clinicflow.opendental.warehouse.copy_encoding import (
    ConversionCounts,
    check_booleans,
    conversion_counters,
    copy_column_names,
    copy_row_layout,
    copy_select_sql,
    read_counters,
    reset_counters,
    reset_counters_sql,
)
from clinicflow.opendental.warehouse.load_errors import LoadError
from clinicflow.opendental.warehouse.load_plan import LoadPlan


@dataclass
class CopyStats:
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    conversions: ConversionCounts = field(default_factory=ConversionCounts)

    def add(self, other: CopyStats) -> CopyStats:
        self.rows += other.rows
        self.bytes += other.bytes
        self.seconds += other.seconds
        self.conversions.merge(other.conversions)
        return self


class ClientCopySource:
    """The file object ``copy_expert`` reads: the C client's output, minus its last line.

    The client runs ``SET counters; SELECT lines; SELECT counters``: every
    line but the last is COPY data; the last one holds the conversion counts
    and is kept back for :attr:`counters_line`. Python touches blocks, never
    rows (rows are counted with ``bytes.count``).
    """

    def __init__(self, export: Any) -> None:
        self._export = export
        self._pending = b""
        self._done = False
        self.rows = 0
        self.bytes = 0
        self.counters_line: bytes | None = None

    def _emit(self, data: bytes) -> bytes:
        self.rows += data.count(b"\n")
        self.bytes += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        while not self._done:
            data = self._export.stdout.read1(COPY_READ_SIZE)
            if not data:
                self._done = True
                self._export.finish()  # raises if the client failed: COPY is then aborted
                last = self._pending.rstrip(b"\n").rfind(b"\n")
                self.counters_line = self._pending[last + 1 :].rstrip(b"\n")
                return self._emit(self._pending[: last + 1]) if last >= 0 else b""
            buf = self._pending + data
            # Hold back from the start of the last complete line on: it may be the counters.
            end = buf.rfind(b"\n")
            cut = buf.rfind(b"\n", 0, end) if end > 0 else -1
            if cut < 0:
                self._pending = buf
                continue
            self._pending = buf[cut + 1 :]
            return self._emit(buf[: cut + 1])
        return b""

    readline = read


def _client_copy(
    mysql_server: Any, pg_cursor: PgCursor, plan: LoadPlan, copy_sql: str, predicate: str, params: Sequence[Any]
) -> tuple[int, int, ConversionCounts]:
    """COPY through the C client (see clinicflow.connectors.mysql.client): rows, bytes, conversions."""
    counters = conversion_counters(plan)
    statements = []
    if counters:
        statements.append(reset_counters_sql(counters))
    statements.append(client.inline_params(copy_select_sql(plan, predicate), params))
    # Always a last line, so the data never loses its own last line to the hold-back.
    statements.append("SELECT CONCAT_WS(',', 'cf-counters'" + "".join(f", {c.variable}" for c in counters) + ")")
    # The UTC session of every load: TIMESTAMP values are read as UTC instants (docs/loading.md).
    with client.open_export(mysql_server, "; ".join(statements)) as export:
        source = ClientCopySource(export)
        try:
            pg_cursor.copy_expert(copy_sql, source, size=COPY_READ_SIZE)
        except Exception as exc:  # noqa: BLE001 - re-raised, named by _copy_error
            raise _copy_error(plan, exc) from None  # the driver's DETAIL may hold row values
    fields = (source.counters_line or b"").decode("ascii", "replace").split(",")
    if fields[0] != "cf-counters" or len(fields) != len(counters) + 1:
        raise LoadError(f"table {plan.table!r}: the MySQL client's output ended early (no conversion counts)")
    counts = ConversionCounts()
    for counter, value in zip(counters, fields[1:], strict=False):
        counts.add(counter.column, counter.counter, int(value or 0))
    return source.rows, source.bytes, counts


def stream_copy(
    mysql_conn: Connection,
    pg_cursor: PgCursor,
    plan: LoadPlan,
    target: str,
    predicate: str = "1=1",
    params: Sequence[Any] = (),
    *,
    mysql_server: Any = None,
) -> CopyStats:
    """COPY the rows of ``plan.table`` matching ``predicate`` into ``target`` (a quoted table name).

    ``mysql_conn`` must come from :func:`~clinicflow.connectors.mysql.sessions.raw_connected`
    with ``streaming=True, zone="server"``.
    With ``mysql_server`` and the MariaDB client installed, the rows travel
    through the C client instead of pymysql (same bytes; less CPU per row).
    """
    start = time.perf_counter()
    check_booleans(mysql_conn, plan, predicate, params)
    copy_sql = f"COPY {target} ({quote_list(copy_column_names(plan), 'postgres')}) FROM STDIN"
    layout = copy_row_layout(plan, plan.primary_key)
    if layout is None and mysql_server is not None and client.client_binary():
        rows, nbytes, conversions = _client_copy(mysql_server, pg_cursor, plan, copy_sql, predicate, params)
        return CopyStats(rows, nbytes, time.perf_counter() - start, conversions)
    reset_counters(mysql_conn, plan)
    cur = mysql_conn.cursor()
    cur.execute(copy_select_sql(plan, predicate, extra=layout.keys if layout else ()), tuple(params))
    reader = streamed_reader(cur, layout)
    stream = CopySource(reader)
    try:
        pg_cursor.copy_expert(copy_sql, stream, size=COPY_READ_SIZE)
    except Exception as exc:  # noqa: BLE001 - re-raised, named by _copy_error
        # The MySQL result is abandoned half read: the caller must close that connection.
        reader.close()
        raise _copy_error(plan, exc) from None  # the driver's DETAIL may hold row values
    cur.close()
    conversions = read_counters(mysql_conn, plan)
    add_streamed_counts(conversions, layout)
    return CopyStats(stream.rows, stream.bytes, time.perf_counter() - start, conversions)


def streamed_reader(cursor: Cursor, layout: RowLayout | None, *, segment_rows: int | None = None) -> LineReader:
    """The reader of an executed COPY query; rows with streamed values are escaped in pieces, in byte blocks."""
    if layout is None:
        return LineReader(cursor, segment_rows=segment_rows)
    return LineReader(
        cursor,
        segment_rows=segment_rows,
        row_pieces=layout.pieces,
        key_start=layout.first_key,
        block_bytes=BLOCK_BYTES,
        read_error=lambda last, exc: carry_error(layout, last, exc),
    )


def add_streamed_counts(conversions: ConversionCounts, layout: RowLayout | None) -> None:
    """NUL bytes the client removed from streamed text/JSON values, counted with the server's conversions."""
    if layout is not None:
        for column, removed in layout.nul_bytes.items():
            conversions.add(column, "nul_bytes", removed)


def _copy_error(plan: LoadPlan, exc: Exception) -> Exception:
    import psycopg2
    import psycopg2.errors

    if isinstance(exc, psycopg2.DataError):
        # PostgreSQL's message names the column and the line; the value can be
        # patient data, so only the first line of the message is kept.
        first = re.sub(r'(:\s*)".*"\s*$', r"\1<value withheld>", one_line(exc, limit=None, with_type=False))
        context = getattr(getattr(exc, "diag", None), "context", None) or ""
        # "COPY t, line 3, column X: \"value\"": keep where, never the value.
        where = re.sub(r':\s*".*$', "", context.split("\n")[0]).split(", ", 1)[-1].strip() if context else ""
        return LoadError(f"table {plan.table!r}: PostgreSQL rejected a value ({first}{'; ' + where if where else ''})")
    if isinstance(exc, psycopg2.IntegrityError):
        # The DETAIL line ("Failing row contains (1, null, zero)") holds the row: never kept.
        diag = getattr(exc, "diag", None)
        column = getattr(diag, "column_name", None)
        context = (getattr(diag, "context", None) or "").split("\n")[0]
        where = re.sub(r':\s*".*$', "", context).split(", ", 1)[-1].strip() if context else ""
        text = f"table {plan.table!r}: {one_line(exc, limit=None, with_type=False)}"
        if isinstance(exc, psycopg2.errors.NotNullViolation) and column:
            pg_type = next((c.pg_type for c in plan.columns if c.name == column), "")
            zero_date = pg_type.startswith(("date", "timestamp"))
            text = f"table {plan.table!r}: column {column!r} is NOT NULL (a key) but a row's value arrived as NULL" + (
                " (a MySQL zero date, '0000-00-00', loads as NULL: PostgreSQL has no such date; fix the source rows"
                " or leave the column out of the key)"
                if zero_date
                else ""
            )
        return LoadError(text + (f"; {where}" if where else ""))
    return exc
