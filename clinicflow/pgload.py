"""Loading replicated MySQL tables into PostgreSQL ``raw``: plain functions, no Prefect.

The fast path (measured in bench/bench_load.py, figures in docs/loading.md):
the MySQL server encodes each row straight into PostgreSQL's COPY text format
(``SELECT CONCAT_WS(X'09', <one expression per column>) FROM t WHERE <chunk>``,
see :func:`copy_expression`), the client reads that ONE binary column per row
through an unbuffered cursor with no value converters, and a small file-like
adapter (:class:`RowStream`) hands the bytes to psycopg2's ``copy_expert``.
No Python code touches individual values, and memory is bounded by one fetch
batch, whatever the table size.

Full load: COPY into a table in the staging schema (chunks may run in
parallel, each its own transaction), then primary key and indexes, then one
transaction drops ``raw.<t>``, moves the staging table into ``raw`` and
records the load state, so readers see the old table or the new one, never a
partial one.

Incremental load: keyset chunks over (incremental columns..., primary key)
in the replica; each chunk is COPied into a temporary table and merged with
``INSERT ... ON CONFLICT (pk) DO UPDATE ... WHERE (row) IS DISTINCT FROM``;
the watermark advances in the same transaction, so a kill at any point loses
nothing and duplicates nothing (a rerun repeats at most one chunk, and the
merge is idempotent).

Loader state lives in schema ``clinicflow`` (dbt reads ``raw``).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from clinicflow import mysql_client
from clinicflow.chunks import keyset_max
from clinicflow.config import TableConfig
from clinicflow.replication import WATERMARK_OVERLAP_SECONDS, checksum_table
from clinicflow.sql import quote_ident, quote_list, quote_qualified, validate_table_name
from clinicflow.typemap import (
    Kind,
    PgColumn,
    SourceColumn,
    UnsupportedTypeError,
    is_compatible_change,
    map_column,
    normalize_pg_type,
)

RAW_SCHEMA = "raw"
STAGE_SCHEMA = "clinicflow_stage"
STATE_SCHEMA = "clinicflow"
LOAD_STATE_TABLE = "load_state"

# Rows fetched from the MySQL stream per read; bounds client memory together
# with COPY_READ_SIZE (about 2 MB per read for typical OpenDental rows).
FETCH_ROWS = 2000
COPY_READ_SIZE = 1 << 20
# Sort memory of a table's index builds together (split between the builds running at once).
INDEX_BUILD_MEMORY_MB = 256
INDEX_BUILD_MIN_MEMORY_MB = 64
INDEX_BUILD_CONNECTIONS = 4
_PG_IDENT_MAX = 63

# COPY text-format pieces, as binary literals so no SQL-mode or escaping rule
# of the MySQL session can change them.
_NULL = "X'5C4E'"          # \N
_SEPARATOR = "X'09'"       # tab
# The regular expression [\\<tab><LF><CR><NUL>] (hex, so no SQL mode changes it): a text value
# matching it must be escaped, or lose its NUL bytes.
_NEEDS_ESCAPE = "X'5B5C5C090A0D005D'"
# A JSON "\u0000" escape (an odd number of backslashes before u0000; "\\u0000" is a literal
# backslash and text): jsonb rejects it, so it is removed with the backslashes' parity kept.
_JSON_NUL_ESCAPE = "X'" + rb"(?<!\\)((?:\\\\)*)\\u0000".hex().upper() + "'"
_JSON_NUL_KEEP = "X'" + rb"\1".hex().upper() + "'"
_JSON_NUL_TEXT = "X'" + rb"\u0000".hex().upper() + "'"



class LoadError(RuntimeError):
    """A table could not be loaded. The message names the table (and column/key when known)."""


class SchemaDriftError(LoadError):
    """The source changed a column's type incompatibly with what raw holds."""


class BooleanValueError(LoadError):
    """A boolean_columns column holds a value other than 0/1."""


class SourceTableMissing(LoadError):
    """The table listed in tables.yml is not in the replication database."""


# ---------------------------------------------------------------------------
# Source description

@dataclass(frozen=True)
class SourceIndex:
    name: str
    columns: tuple[str, ...]
    prefix_lengths: tuple[int | None, ...]
    unique: bool
    index_type: str = "BTREE"


@dataclass(frozen=True)
class SourceTable:
    """What information_schema says about one replicated table."""

    name: str
    columns: tuple[SourceColumn, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[SourceIndex, ...] = ()


def mysql_connect(server: Any, *, streaming: bool = False) -> Any:
    """A replica connection for the loader: values arrive as raw bytes (no decoders).

    TIMESTAMP columns are read in the server's own time zone (OpenDental
    stores local wall-clock time; datetime columns carry it as written).
    """
    import pymysql.converters

    encoders_only = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}
    conn = server.connect(streaming=streaming, conv=encoders_only, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = @@global.time_zone")
    return conn


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return str(value)


def _int(value: Any) -> int | None:
    text = _text(value)
    return None if text is None else int(text)


def describe_source(mysql_conn: Any, table: str) -> SourceTable:
    """Columns, primary key and indexes of ``table`` in the connection's database."""
    validate_table_name(table)
    with mysql_conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, "
            "DATETIME_PRECISION, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table,))
        column_rows = cur.fetchall()
        if not column_rows:
            raise SourceTableMissing(f"table {table!r}: not found in the replication database")
        cur.execute(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = %s", (table,))
        json_columns = {name.lower() for r in cur.fetchall() if (name := json_check_column(_text(r[0]) or ""))}
        cur.execute(
            "SELECT INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, SUB_PART, NON_UNIQUE, INDEX_TYPE "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
            "ORDER BY INDEX_NAME, SEQ_IN_INDEX", (table,))
        index_rows = cur.fetchall()
    columns = []
    for name, data_type, column_type, nullable, precision, scale, dt_precision, charset in column_rows:
        col_name = _text(name) or ""
        is_json = col_name.lower() in json_columns
        columns.append(SourceColumn(
            name=col_name, data_type=_text(data_type) or "", column_type=_text(column_type) or "",
            nullable=_text(nullable) == "YES", numeric_precision=_int(precision), numeric_scale=_int(scale),
            datetime_precision=_int(dt_precision), charset=_text(charset), is_json=is_json))
    grouped: dict[str, list[tuple[str, int | None, bool, str]]] = {}
    for index_name, _seq, column_name, sub_part, non_unique, index_type in index_rows:
        grouped.setdefault(_text(index_name) or "", []).append(
            (_text(column_name) or "", _int(sub_part), _int(non_unique) == 0, _text(index_type) or "BTREE"))
    primary: tuple[str, ...] = ()
    indexes = []
    for index_name, parts in grouped.items():
        if index_name == "PRIMARY":
            primary = tuple(p[0] for p in parts)
            continue
        indexes.append(SourceIndex(index_name, tuple(p[0] for p in parts), tuple(p[1] for p in parts),
                                   parts[0][2], parts[0][3]))
    return SourceTable(table, tuple(columns), primary, tuple(indexes))


# MariaDB's JSON type is longtext with CHECK (json_valid(`name`)); the name is backtick-quoted, a backtick doubled.
_JSON_CHECK = re.compile(r"^\s*json_valid\s*\(\s*`((?:[^`]|``)+)`\s*\)\s*$", re.IGNORECASE)


def json_check_column(check_clause: str) -> str | None:
    """The column a MariaDB ``json_valid(`col`)`` check constraint is about, or None for any other check."""
    match = _JSON_CHECK.match(check_clause)
    return match.group(1).replace("``", "`") if match else None


def pg_truncation_collisions(names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of column names that are one name once PostgreSQL truncates identifiers to 63 bytes."""
    seen: dict[bytes, str] = {}
    pairs = []
    for name in names:
        key = name.encode("utf-8")[:_PG_IDENT_MAX]
        if key in seen:
            pairs.append((seen[key], name))
        else:
            seen[key] = name
    return pairs


def source_engine(mysql_conn: Any, table: str) -> str:
    """The storage engine of ``table`` in the connection's database (``''`` when it has none, as a view)."""
    with mysql_conn.cursor() as cur:
        cur.execute("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                    (table,))
        row = cur.fetchone()
    return (_text(row[0]) if row else None) or ""


# ---------------------------------------------------------------------------
# The table plan: mapping + SQL pieces, decided once per table per run

@dataclass(frozen=True)
class TablePlan:
    """Everything the chunk loaders need about one table (picklable, passed between tasks)."""

    table: str
    columns: tuple[PgColumn, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[SourceIndex, ...]
    incremental_columns: tuple[str, ...]
    batch_size: int
    raw_schema: str = RAW_SCHEMA
    stage_schema: str = STAGE_SCHEMA
    state_schema: str = STATE_SCHEMA

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def keyset_columns(self) -> tuple[str, ...]:
        """Incremental columns then primary key columns not already among them."""
        return self.incremental_columns + tuple(c for c in self.primary_key if c not in self.incremental_columns)

    @property
    def mapping_signature(self) -> str:
        """Changes when the PostgreSQL shape of the table changes (forces a reload of an unchanged table)."""
        text = json.dumps([[c.name, c.pg_type, c.kind.value] for c in self.columns] + [list(self.primary_key)])
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def column(self, name: str) -> PgColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


def plan_table(source: SourceTable, config: TableConfig, *, raw_schema: str = RAW_SCHEMA,
               stage_schema: str = STAGE_SCHEMA, state_schema: str = STATE_SCHEMA) -> TablePlan:
    """Map every column (typemap) and check tables.yml against the live table."""
    table = source.name
    names = {c.name for c in source.columns}
    for field_name, wanted in (("boolean_columns", config.boolean_columns),
                               ("incremental_columns", config.incremental_columns),
                               ("primary_key", config.primary_key)):
        missing = [c for c in wanted if c not in names]
        if missing:
            raise LoadError(f"table {table!r}: tables.yml {field_name} names column(s) {missing} "
                            "that the replicated table does not have")
    collisions = pg_truncation_collisions([c.name for c in source.columns])
    if collisions:
        detail = "; ".join(f"{a!r} and {b!r}" for a, b in collisions)
        raise LoadError(f"table {table!r}: column names that PostgreSQL would cut to the same {_PG_IDENT_MAX} bytes: "
                        f"{detail}")
    booleans = set(config.boolean_columns)
    try:
        columns = tuple(map_column(c, boolean=c.name in booleans) for c in source.columns)
    except UnsupportedTypeError as exc:
        raise LoadError(f"table {table!r}: {exc}") from None
    # The live primary key wins over tables.yml (it is what makes ON CONFLICT valid).
    primary_key = source.primary_key or tuple(config.primary_key)
    incremental = tuple(config.incremental_columns) if (config.is_incremental and primary_key) else ()
    return TablePlan(table, columns, tuple(primary_key), source.indexes, incremental, config.batch_size,
                     raw_schema, stage_schema, state_schema)


# ---------------------------------------------------------------------------
# Server-side encoding into COPY text format

def _escaped_text(binary_expr: str) -> str:
    # Order matters: backslash first, so escapes added later are not doubled.
    out = f"REPLACE({binary_expr}, X'5C', X'5C5C')"
    for raw, escaped in (("09", "5C74"), ("0A", "5C6E"), ("0D", "5C72")):
        out = f"REPLACE({out}, X'{raw}', X'{escaped}')"
    return out


_UTF8_BYTES_CHARSETS = ("", "utf8", "utf8mb3", "utf8mb4", "ascii", "binary")


def _holds_utf8_bytes(col: PgColumn) -> bool:
    """True when the column's bytes are already what PostgreSQL receives (no conversion)."""
    return (col.source.charset or "").lower() in _UTF8_BYTES_CHARSETS


def _as_utf8_binary(col: PgColumn, quoted: str) -> str:
    if _holds_utf8_bytes(col):
        return f"CAST({quoted} AS BINARY)"
    return f"CAST(CONVERT({quoted} USING utf8mb4) AS BINARY)"


def zero_date_test(quoted: str) -> str:
    """True for a date with a zero year-month-day part ('0000-00-00', '2020-00-15'), which PostgreSQL rejects.

    TO_DAYS is NULL exactly for those (and for NULL): one function call where
    ``MONTH(d) = 0 OR DAYOFMONTH(d) = 0`` took five (measured: the six date
    columns of 1M procedurelog rows cost the server 0.45 s of CPU instead of 1.0 s).
    """
    return f"TO_DAYS({quoted}) IS NULL"


@dataclass(frozen=True)
class Counter:
    """A session variable the encoding query adds to when it converts a value (zero date, NUL bytes)."""

    variable: str   # e.g. @cf_conv_3
    column: str
    counter: str    # "zero_dates" | "nul_bytes"


def conversion_counters(plan: TablePlan) -> list[Counter]:
    """One counter per column whose values can be converted on the way."""
    out = []
    for index, col in enumerate(plan.columns):
        if col.kind in (Kind.date, Kind.datetime):
            out.append(Counter(f"@cf_conv_{index}", col.name, "zero_dates"))
        elif col.kind in (Kind.text, Kind.json):
            out.append(Counter(f"@cf_conv_{index}", col.name, "nul_bytes"))
    return out


def copy_expression(col: PgColumn, counter: str | None = None) -> str:
    """MySQL expression giving the column's value in PostgreSQL COPY text format (never NULL).

    With ``counter`` (a session variable), the expression also adds the zero
    dates / NUL bytes it converts to that variable. The addition sits in the
    branch taken only for a converted value, so ordinary rows pay a single
    test, and the counts come from the same scan as the data.
    """
    q = quote_ident(col.name, "mysql")
    kind = col.kind

    def or_null(expr: str) -> str:
        # CONCAT_WS skips NULL arguments, which would shift the columns; a
        # NOT NULL column needs no guard (and IFNULL costs ~30 ns a value).
        return f"IFNULL({expr}, {_NULL})" if col.source.nullable else expr

    if kind in (Kind.integer, Kind.decimal, Kind.double, Kind.boolean_int, Kind.time):
        return or_null(f"{q} + 0" if col.source.data_type.lower() == "year" else q)
    if kind is Kind.float:
        # A float printed with 6 digits does not round-trip; as a double it does.
        return or_null(f"CAST({q} AS DOUBLE)")
    if kind in (Kind.date, Kind.datetime):
        if counter is None:
            return f"IF({q} IS NULL OR {zero_date_test(q)}, {_NULL}, {q})"
        not_null = f"{q} IS NOT NULL AND " if col.source.nullable else ""
        return (f"IF({not_null}{zero_date_test(q)} AND ({counter} := {counter} + 1), "
                f"{_NULL}, {or_null(q)})")
    if kind is Kind.json:
        return or_null(json_without_nul_sql(_as_utf8_binary(col, q), counter))
    if kind is Kind.text:
        binary = _as_utf8_binary(col, q)
        # PostgreSQL text cannot hold NUL: removed, and counted.
        without_nul = f"REPLACE({binary}, X'00', X'')"
        if counter is None:
            return or_null(_escaped_text(without_nul))
        removed = f"LENGTH({binary}) - LENGTH({without_nul})"
        # INSTR finds a NUL in one scan without building a string; only the
        # rare value holding one pays for REPLACE and the count.
        escaped = (f"IF(INSTR({binary}, X'00') > 0 AND ({counter} := {counter} + {removed}), "
                   f"{_escaped_text(without_nul)}, {_escaped_text(binary)})")
        # Most values need none of that: an empty one is seen by LENGTH, and one
        # without backslash, tab, LF, CR or NUL by one RLIKE, where the NUL test
        # and the four REPLACEs are ten function calls (the server's CPU for the
        # nine text columns of 1M procedurelog rows: 2.8 s -> 2.1 s).
        # The test reads the bytes that are sent: the column's own for UTF-8, else the converted ones.
        tested = q if _holds_utf8_bytes(col) else binary
        return or_null(f"IF(LENGTH({q}) = 0, '', IF({tested} RLIKE {_NEEDS_ESCAPE}, {escaped}, {binary}))")
    if kind is Kind.binary:
        # bytea hex input \\x..., with the backslash escaped for COPY.
        return or_null(f"CONCAT(X'5C5C78', HEX({q}))")
    if kind is Kind.bit1:
        return or_null(f"{q} + 0")
    if kind is Kind.bits:
        return or_null(f"LPAD(BIN({q} + 0), {col.bit_length}, '0')")
    raise AssertionError(f"unhandled kind {kind}")


def json_without_nul_sql(binary: str, counter: str | None = None) -> str:
    """A JSON value's COPY text with NUL bytes and ``\\u0000`` escapes removed (jsonb accepts neither).

    Only a value holding either pays for the removal; with ``counter`` the
    removed NULs are added to it (an escape is six bytes). The rest of the
    value is sent byte for byte, so numbers keep their precision.
    """
    no_bytes = f"REPLACE({binary}, X'00', X'')"
    cleaned = f"REGEXP_REPLACE({no_bytes}, {_JSON_NUL_ESCAPE}, {_JSON_NUL_KEEP})"
    count = ""
    if counter is not None:
        removed = (f"(LENGTH({binary}) - LENGTH({no_bytes})) + "
                   f"(LENGTH({no_bytes}) - LENGTH({cleaned})) DIV 6")
        count = f" AND ({counter} := {counter} + {removed}) IS NOT NULL"
    test = f"(INSTR({binary}, X'00') > 0 OR INSTR({binary}, {_JSON_NUL_TEXT}) > 0)"
    return f"IF({test}{count}, {_escaped_text(cleaned)}, {_escaped_text(binary)})"


def copy_line_sql(plan: TablePlan, *, counted: bool = True) -> str:
    """The CONCAT_WS(...) select item producing one COPY line per row."""
    counters = {c.column: c.variable for c in conversion_counters(plan)} if counted else {}
    exprs = ", ".join(copy_expression(c, counters.get(c.name)) for c in plan.columns)
    return f"CONCAT_WS({_SEPARATOR}, {exprs})"


def copy_select_sql(plan: TablePlan, predicate: str = "1=1", order_by: Sequence[str] = (), *,
                    counted: bool = True) -> str:
    """The MySQL query producing one COPY line per row of the chunk."""
    sql = f"SELECT {copy_line_sql(plan, counted=counted)} FROM {quote_ident(plan.table, 'mysql')} WHERE {predicate}"
    if order_by:
        sql += " ORDER BY " + quote_list(list(order_by), "mysql")
    return sql


@dataclass
class ConversionCounts:
    """Values changed on the way (zero dates → NULL, NUL bytes removed), per column."""

    per_column: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, column: str, counter: str, value: int) -> None:
        if value:
            slot = self.per_column.setdefault(column, {})
            slot[counter] = slot.get(counter, 0) + int(value)

    def merge(self, other: "ConversionCounts") -> "ConversionCounts":
        for column, counters in other.per_column.items():
            for counter, value in counters.items():
                self.add(column, counter, value)
        return self

    def total(self, counter: str) -> int:
        return sum(c.get(counter, 0) for c in self.per_column.values())


def reset_counters_sql(counters: Sequence[Counter]) -> str:
    """``SET @cf_conv_i = 0, ...`` for the counters (which must not be empty)."""
    return "SET " + ", ".join(f"{c.variable} = 0" for c in counters)


def reset_counters(mysql_conn: Any, plan: TablePlan) -> None:
    counters = conversion_counters(plan)
    if counters:
        with mysql_conn.cursor() as cur:
            cur.execute(reset_counters_sql(counters))


def read_counters(mysql_conn: Any, plan: TablePlan) -> ConversionCounts:
    """The conversions counted by the encoding query just finished on this connection."""
    counts = ConversionCounts()
    counters = conversion_counters(plan)
    if counters:
        with mysql_conn.cursor() as cur:
            cur.execute("SELECT " + ", ".join(c.variable for c in counters))
            row = cur.fetchone()
        for counter, value in zip(counters, row):
            counts.add(counter.column, counter.counter, _int(value) or 0)
    return counts


def check_booleans(mysql_conn: Any, plan: TablePlan, predicate: str = "1=1", params: Sequence[Any] = ()) -> None:
    """Fail the table, naming key and value, when a boolean_columns column holds other than 0/1."""
    booleans = [c.name for c in plan.columns if c.kind is Kind.boolean_int]
    if not booleans:
        return
    key = list(plan.primary_key) or booleans
    bad = " OR ".join(f"{quote_ident(b, 'mysql')} NOT IN (0, 1)" for b in booleans)
    with mysql_conn.cursor() as cur:
        cur.execute(f"SELECT {quote_list(key + booleans, 'mysql')} FROM {quote_ident(plan.table, 'mysql')} "
                    f"WHERE ({predicate}) AND ({bad}) LIMIT 1", tuple(params))
        row = cur.fetchone()
    if row is None:
        return
    key_text = ", ".join(f"{k}={_text(v)}" for k, v in zip(key, row[: len(key)]))
    for name, value in zip(booleans, row[len(key):]):
        if _text(value) not in (None, "0", "1"):
            raise BooleanValueError(
                f"table {plan.table!r}: column {name!r} is listed in boolean_columns but the row with "
                f"{key_text} holds {_text(value)} (only 0 and 1 can be loaded as boolean)")


# ---------------------------------------------------------------------------
# Streaming

class LineReader:
    """Reads COPY lines from an executed MySQL unbuffered cursor in a background thread.

    Why a thread: ``copy_expert`` alternates between reading its source and
    sending to PostgreSQL; done in one thread, MySQL and PostgreSQL wait for
    each other (measured: 7.2 s vs 5.2 s for 1M rows). The thread fetches
    blocks of at most ``block_rows`` rows into a queue ``depth`` blocks deep,
    so memory stays bounded by a few blocks whatever the table size.

    Rows are (copy line, keyset values...). With ``segment_rows`` blocks never
    straddle a multiple of it, so a consumer can stop exactly at a segment end.
    """

    _END = object()

    def __init__(self, cursor: Any, *, block_rows: int = FETCH_ROWS, segment_rows: int | None = None,
                 depth: int = 4) -> None:
        import queue
        import threading

        self._cursor = cursor
        self._block_rows = block_rows
        self._segment_rows = segment_rows
        self._queue: Any = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.finished = False
        self._thread = threading.Thread(target=self._run, name="clinicflow-mysql-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        fetched = 0
        try:
            while not self._stop.is_set():
                want = self._block_rows
                if self._segment_rows:
                    want = min(want, self._segment_rows - fetched % self._segment_rows)
                rows = self._cursor.fetchmany(want)
                if not rows:
                    break
                fetched += len(rows)
                data = b"\n".join([r[0] for r in rows]) + b"\n"
                if not self._put((data, len(rows), tuple(rows[-1][1:]))):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def next_block(self) -> tuple[bytes, int, tuple[Any, ...]] | None:
        """The next (data, rows, last row's keyset values), or None at the end of the result."""
        if self.finished:
            return None
        item = self._queue.get()
        if item is self._END:
            self.finished = True
            self._thread.join()
            return None
        if isinstance(item, BaseException):
            self.finished = True
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (after an error on the PostgreSQL side); the caller then closes the connection."""
        self._stop.set()
        self._thread.join(timeout=10)


class CopySource:
    """The file object ``copy_expert`` reads: blocks from a :class:`LineReader`, up to ``limit`` rows."""

    def __init__(self, reader: LineReader, limit: int | None = None) -> None:
        self._reader = reader
        self._limit = limit
        self.rows = 0
        self.bytes = 0
        self.last_keyset: tuple[Any, ...] | None = None

    def read(self, size: int = -1) -> bytes:
        if self._limit is not None and self.rows >= self._limit:
            return b""
        block = self._reader.next_block()
        if block is None:
            return b""
        data, rows, keyset = block
        self.rows += rows
        self.bytes += len(data)
        self.last_keyset = keyset
        return data

    readline = read


@dataclass
class CopyStats:
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    conversions: ConversionCounts = field(default_factory=ConversionCounts)

    def add(self, other: "CopyStats") -> "CopyStats":
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
                self.counters_line = self._pending[last + 1:].rstrip(b"\n")
                return self._emit(self._pending[:last + 1]) if last >= 0 else b""
            buf = self._pending + data
            # Hold back from the start of the last complete line on: it may be the counters.
            end = buf.rfind(b"\n")
            cut = buf.rfind(b"\n", 0, end) if end > 0 else -1
            if cut < 0:
                self._pending = buf
                continue
            self._pending = buf[cut + 1:]
            return self._emit(buf[:cut + 1])
        return b""

    readline = read


def _client_copy(mysql_server: Any, pg_cursor: Any, plan: TablePlan, copy_sql: str, predicate: str,
                 params: Sequence[Any]) -> tuple[int, int, ConversionCounts]:
    """COPY through the C client (see clinicflow.mysql_client): rows, bytes, conversions."""
    counters = conversion_counters(plan)
    statements = []
    if counters:
        statements.append(reset_counters_sql(counters))
    statements.append(mysql_client.inline_params(copy_select_sql(plan, predicate), params))
    # Always a last line, so the data never loses its own last line to the hold-back.
    statements.append("SELECT CONCAT_WS(',', 'cf-counters'" + "".join(f", {c.variable}" for c in counters) + ")")
    with mysql_client.open_export(mysql_server, "; ".join(statements), time_zone="@@global.time_zone") as export:
        source = ClientCopySource(export)
        try:
            pg_cursor.copy_expert(copy_sql, source, size=COPY_READ_SIZE)
        except Exception as exc:
            raise _copy_error(plan, exc) from exc
    fields = (source.counters_line or b"").decode("ascii", "replace").split(",")
    if fields[0] != "cf-counters" or len(fields) != len(counters) + 1:
        raise LoadError(f"table {plan.table!r}: the MySQL client's output ended early (no conversion counts)")
    counts = ConversionCounts()
    for counter, value in zip(counters, fields[1:]):
        counts.add(counter.column, counter.counter, int(value or 0))
    return source.rows, source.bytes, counts


def stream_copy(mysql_conn: Any, pg_cursor: Any, plan: TablePlan, target: str, predicate: str = "1=1",
                params: Sequence[Any] = (), *, mysql_server: Any = None) -> CopyStats:
    """COPY the rows of ``plan.table`` matching ``predicate`` into ``target`` (a quoted table name).

    ``mysql_conn`` must come from :func:`mysql_connect` with ``streaming=True``.
    With ``mysql_server`` and the MariaDB client installed, the rows travel
    through the C client instead of pymysql (same bytes; less CPU per row).
    """
    start = time.perf_counter()
    check_booleans(mysql_conn, plan, predicate, params)
    copy_sql = f"COPY {target} ({quote_list(plan.column_names, 'postgres')}) FROM STDIN"
    if mysql_server is not None and mysql_client.client_binary():
        rows, nbytes, conversions = _client_copy(mysql_server, pg_cursor, plan, copy_sql, predicate, params)
        return CopyStats(rows, nbytes, time.perf_counter() - start, conversions)
    reset_counters(mysql_conn, plan)
    cur = mysql_conn.cursor()
    cur.execute(copy_select_sql(plan, predicate), tuple(params))
    reader = LineReader(cur)
    stream = CopySource(reader)
    try:
        pg_cursor.copy_expert(copy_sql, stream, size=COPY_READ_SIZE)
    except Exception as exc:
        # The MySQL result is abandoned half read: the caller must close that connection.
        reader.close()
        raise _copy_error(plan, exc) from exc
    cur.close()
    conversions = read_counters(mysql_conn, plan)
    return CopyStats(stream.rows, stream.bytes, time.perf_counter() - start, conversions)


def _copy_error(plan: TablePlan, exc: Exception) -> Exception:
    import psycopg2

    if isinstance(exc, psycopg2.DataError):
        # PostgreSQL's message names the column and the line; the value can be
        # patient data, so only the first line of the message is kept.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = re.sub(r'(:\s*)".*"\s*$', r"\1<value withheld>", first)
        context = getattr(getattr(exc, "diag", None), "context", None) or ""
        # "COPY t, line 3, column X: \"value\"": keep where, never the value.
        where = re.sub(r':\s*".*$', "", context.split("\n")[0]).split(", ", 1)[-1].strip() if context else ""
        return LoadError(f"table {plan.table!r}: PostgreSQL rejected a value ({first}{'; ' + where if where else ''})")
    return exc


# ---------------------------------------------------------------------------
# DDL

def _short_ident(name: str) -> str:
    """Keep PostgreSQL identifiers within 63 bytes, stable and unique via a hash suffix."""
    if len(name.encode()) <= _PG_IDENT_MAX:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return name.encode()[: _PG_IDENT_MAX - 9].decode("utf-8", "ignore") + "_" + digest


def column_definitions(plan: TablePlan) -> str:
    parts = []
    for col in plan.columns:
        not_null = " NOT NULL" if (not col.nullable or col.name in plan.primary_key) else ""
        parts.append(f"{quote_ident(col.name, 'postgres')} {col.pg_type}{not_null}")
    return ", ".join(parts)


def create_table_sql(plan: TablePlan, schema: str) -> str:
    return f"CREATE TABLE {quote_qualified(schema, plan.table, 'postgres')} ({column_definitions(plan)})"


def _primary_key_name(plan: TablePlan) -> str:
    return quote_ident(_short_ident(f"{plan.table}_pkey"), "postgres")


def primary_key_sql(plan: TablePlan, schema: str) -> str | None:
    """ALTER TABLE ... ADD PRIMARY KEY: the key built in one statement (PostgreSQL's usual way)."""
    if not plan.primary_key:
        return None
    return (f"ALTER TABLE {quote_qualified(schema, plan.table, 'postgres')} ADD CONSTRAINT {_primary_key_name(plan)} "
            f"PRIMARY KEY ({quote_list(list(plan.primary_key), 'postgres')})")


def primary_key_index_sql(plan: TablePlan, schema: str) -> str | None:
    """The primary key's unique index alone; :func:`attach_primary_key_sql` makes it the key.

    Unlike ``ALTER TABLE ... ADD PRIMARY KEY`` (an exclusive lock), CREATE
    INDEX can run beside the other index builds of the same table.
    """
    if not plan.primary_key:
        return None
    return (f"CREATE UNIQUE INDEX {_primary_key_name(plan)} ON {quote_qualified(schema, plan.table, 'postgres')} "
            f"({quote_list(list(plan.primary_key), 'postgres')})")


def attach_primary_key_sql(plan: TablePlan, schema: str) -> str | None:
    """Promote the index of :func:`primary_key_index_sql` to the primary key (no scan: the columns are NOT NULL)."""
    if not plan.primary_key:
        return None
    return (f"ALTER TABLE {quote_qualified(schema, plan.table, 'postgres')} ADD CONSTRAINT {_primary_key_name(plan)} "
            f"PRIMARY KEY USING INDEX {_primary_key_name(plan)}")


def index_sqls(plan: TablePlan, schema: str) -> list[str]:
    """The source's secondary indexes, recreated (prefix indexes as expression indexes)."""
    out = []
    for index in plan.indexes:
        if index.index_type.upper() in ("FULLTEXT", "SPATIAL"):
            continue  # no btree equivalent; documented
        parts = []
        has_prefix = False
        for name, prefix in zip(index.columns, index.prefix_lengths):
            q = quote_ident(name, "postgres")
            if prefix:
                has_prefix = True
                kind = plan.column(name).kind
                parts.append(f"(substring({q} from 1 for {int(prefix)}))" if kind in (Kind.text, Kind.binary) else q)
            else:
                parts.append(q)
        # A MySQL unique index stays unique (it is as strict or stricter in PostgreSQL),
        # except over prefixes, where only the prefix is indexed.
        unique = "UNIQUE " if index.unique and not has_prefix else ""
        name = quote_ident(_short_ident(f"{plan.table}__{index.name}"), "postgres")
        out.append(f"CREATE {unique}INDEX {name} ON {quote_qualified(schema, plan.table, 'postgres')} "
                   f"({', '.join(parts)})")
    return out


STATE_DDL = [
    "CREATE SCHEMA IF NOT EXISTS {state}",
    "CREATE SCHEMA IF NOT EXISTS {stage}",
    "CREATE SCHEMA IF NOT EXISTS {replaced}",
    "CREATE SCHEMA IF NOT EXISTS {raw}",
    """CREATE TABLE IF NOT EXISTS {state}.load_state (
        table_name text PRIMARY KEY,
        mode text NOT NULL,
        watermark_columns text[] NOT NULL DEFAULT '{{}}',
        watermark text[],
        source_fingerprint text,
        loaded_at timestamptz NOT NULL DEFAULT now()
    )""",
]


def ensure_schemas(pg_conn: Any, *, raw_schema: str = RAW_SCHEMA, stage_schema: str = STAGE_SCHEMA,
                   state_schema: str = STATE_SCHEMA) -> None:
    """Create the raw, staging, replaced and state schemas and the load-state table (idempotent)."""
    names = {"state": quote_ident(state_schema, "postgres"), "stage": quote_ident(stage_schema, "postgres"),
             "replaced": quote_ident(replaced_schema(stage_schema), "postgres"), "raw": quote_ident(raw_schema, "postgres")}
    with pg_conn.cursor() as cur:
        # Concurrent first runs may race on CREATE SCHEMA; the advisory lock serialises them.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('clinicflow.ensure_schemas'))")
        for statement in STATE_DDL:
            cur.execute(statement.format(**names))
    pg_conn.commit()


# ---------------------------------------------------------------------------
# Load state

@dataclass(frozen=True)
class LoadState:
    mode: str
    watermark_columns: tuple[str, ...]
    watermark: tuple[str, ...] | None
    source_fingerprint: str | None


def read_state(pg_conn: Any, plan: TablePlan) -> LoadState | None:
    with pg_conn.cursor() as cur:
        cur.execute(f"SELECT mode, watermark_columns, watermark, source_fingerprint FROM "
                    f"{quote_qualified(plan.state_schema, LOAD_STATE_TABLE, 'postgres')} WHERE table_name = %s",
                    (plan.table,))
        row = cur.fetchone()
    if row is None:
        return None
    return LoadState(row[0], tuple(row[1] or ()), tuple(row[2]) if row[2] is not None else None, row[3])


def _write_state(cur: Any, plan: TablePlan, mode: str, watermark: Sequence[str] | None,
                 fingerprint: str | None) -> None:
    cur.execute(
        f"INSERT INTO {quote_qualified(plan.state_schema, LOAD_STATE_TABLE, 'postgres')} "
        "(table_name, mode, watermark_columns, watermark, source_fingerprint, loaded_at) "
        "VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (table_name) DO UPDATE SET mode = EXCLUDED.mode, "
        "watermark_columns = EXCLUDED.watermark_columns, watermark = EXCLUDED.watermark, "
        "source_fingerprint = EXCLUDED.source_fingerprint, loaded_at = EXCLUDED.loaded_at",
        (plan.table, mode, list(plan.keyset_columns if plan.incremental_columns else ()),
         list(watermark) if watermark is not None else None, fingerprint))


def raw_table_columns(pg_conn: Any, schema: str, table: str) -> dict[str, str] | None:
    """Column name → format_type() of an existing PostgreSQL table, or None if it does not exist."""
    with pg_conn.cursor() as cur:
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum", (schema, table))
        rows = cur.fetchall()
    return {r[0]: r[1] for r in rows} if rows else None


def source_fingerprint(mysql_conn: Any, plan: TablePlan) -> str:
    """Content fingerprint of a source table (CHECKSUM TABLE) plus the mapping: equal → nothing to reload."""
    return f"{checksum_table(mysql_conn, plan.table) or 'none'}:{plan.mapping_signature}"


# ---------------------------------------------------------------------------
# Schema drift (incremental loads into an existing raw table)

@dataclass
class DriftResult:
    added_columns: list[str] = field(default_factory=list)
    widened_columns: list[str] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)

    @property
    def needs_backfill(self) -> bool:
        return bool(self.added_columns)


def compare_schema(plan: TablePlan, existing: dict[str, str]) -> DriftResult:
    """Classify differences between the planned columns and raw's; raise on an incompatible type change."""
    result = DriftResult()
    problems = []
    for col in plan.columns:
        old = existing.get(col.name)
        if old is None:
            result.added_columns.append(col.name)
        elif normalize_pg_type(old) != normalize_pg_type(col.pg_type):
            if is_compatible_change(old, col.pg_type):
                result.widened_columns.append(col.name)
            else:
                problems.append(f"column {col.name!r} is {old} in {plan.raw_schema}.{plan.table} but the source now "
                                f"has {col.source.column_type} (→ {col.pg_type})")
    result.dropped_columns = [name for name in existing if name not in {c.name for c in plan.columns}]
    if problems:
        raise SchemaDriftError(f"table {plan.table!r}: incompatible type change: " + "; ".join(problems)
                               + "; not loaded (run with full_refresh to accept the new type)")
    return result


def apply_drift(pg_conn: Any, plan: TablePlan, drift: DriftResult) -> None:
    """ALTER raw for added and safely widened columns (one transaction)."""
    target = quote_qualified(plan.raw_schema, plan.table, "postgres")
    with pg_conn.cursor() as cur:
        for name in drift.added_columns:
            col = plan.column(name)
            cur.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(name, 'postgres')} {col.pg_type}")
        for name in drift.widened_columns:
            col = plan.column(name)
            q = quote_ident(name, "postgres")
            cur.execute(f"ALTER TABLE {target} ALTER COLUMN {q} TYPE {col.pg_type} USING {q}::{col.pg_type}")
    pg_conn.commit()


# ---------------------------------------------------------------------------
# Full load: staging table, chunks, then an atomic swap

def stage_target(plan: TablePlan) -> str:
    return quote_qualified(plan.stage_schema, plan.table, "postgres")


def replaced_schema(stage_schema: str) -> str:
    """Where a full load's swap moves the table it replaces, until it is dropped after the commit.

    A schema of its own: the replaced table keeps its index names, which
    would clash with the new table's in raw and the staging table's in stage.
    """
    return _short_ident(f"{stage_schema}_replaced")


def replaced_target(plan: TablePlan) -> str:
    return quote_qualified(replaced_schema(plan.stage_schema), plan.table, "postgres")


def drop_replaced_leftovers(pg_conn: Any, stage_schema: str = STAGE_SCHEMA) -> list[str]:
    """Drop the replaced tables that crashed loads left aside (each a full copy of an old table); their names.

    Once per run: a table now loaded incrementally would otherwise keep its
    leftover until its next full load. Harmless beside a running load: a swap's
    move is invisible until its commit, and its own drop is ``IF EXISTS``.
    """
    schema = replaced_schema(stage_schema)
    with pg_conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,))
        names = [r[0] for r in cur.fetchall()]
        for name in names:
            cur.execute(f"DROP TABLE IF EXISTS {quote_qualified(schema, name, 'postgres')}")
    pg_conn.commit()
    return names


def prepare_stage(pg_conn: Any, plan: TablePlan) -> None:
    """(Re)create the empty staging table: no key or index yet, they are built once after the COPY.

    Also removes what a crashed earlier load left: its staging table, and the
    replaced copy a crash between the swap and its drop kept.
    """
    with pg_conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {replaced_target(plan)}")
        cur.execute(f"DROP TABLE IF EXISTS {stage_target(plan)}")
        cur.execute(create_table_sql(plan, plan.stage_schema))
    pg_conn.commit()


def load_stage_chunk(mysql_stream_conn: Any, pg_conn: Any, plan: TablePlan, predicate: str = "1=1",
                     params: Sequence[Any] = (), *, mysql_server: Any = None) -> CopyStats:
    """COPY one chunk of the source into the staging table and commit it."""
    try:
        with pg_conn.cursor() as cur:
            stats = stream_copy(mysql_stream_conn, cur, plan, stage_target(plan), predicate, params,
                                mysql_server=mysql_server)
        pg_conn.commit()
    except BaseException:
        pg_conn.rollback()
        raise
    return stats


def current_keyset_max(mysql_conn: Any, plan: TablePlan) -> tuple[str, ...] | None:
    """The highest (incremental columns..., key) in the source now: the watermark a full load starts from."""
    if not plan.incremental_columns:
        return None
    row = keyset_max(mysql_conn, plan.table, plan.keyset_columns)
    return tuple(_text(v) or "" for v in row) if row else None


def _nul_note(columns: Sequence[str], nul_columns: Collection[str]) -> str:
    """Why a key that is unique in MySQL is not in PostgreSQL: NUL bytes removed from its text columns."""
    stripped = [c for c in columns if c in nul_columns]
    if not stripped:
        return ""
    return (f"; keys that differ only by NUL bytes collided once the NUL bytes were removed (PostgreSQL text "
            f"cannot hold them) in column(s) {', '.join(stripped)}")


def build_stage_indexes(connect: Callable[[], Any], plan: TablePlan, *,
                        connections: int = INDEX_BUILD_CONNECTIONS, nul_columns: Collection[str] = ()) -> None:
    """Build the primary key's index and the secondary indexes of the staging table, side by side.

    Each build runs on its own connection (``connect()``), at most
    ``connections`` at a time, each with an equal share of
    ``INDEX_BUILD_MEMORY_MB`` for its sort. Why side by side: one after the other,
    even with PostgreSQL's parallel workers, the four builds of 1M procedurelog
    rows took 3.45 s; four at once took 2.4-2.6 s on two cores (they share the
    heap scans, and the serial parts of each build overlap). A failed build
    (duplicate key) raises; the staging table is then dropped by the caller,
    and ``raw`` keeps its previous content.
    """
    statements = [sql for sql in [primary_key_index_sql(plan, plan.stage_schema),
                                  *index_sqls(plan, plan.stage_schema)] if sql]
    if not statements:
        return
    built = [i for i in plan.indexes if i.index_type.upper() not in ("FULLTEXT", "SPATIAL")]
    index_of_statement = dict(zip(index_sqls(plan, plan.stage_schema), built))
    workers = max(1, min(connections, len(statements)))
    memory_mb = max(INDEX_BUILD_MIN_MEMORY_MB, INDEX_BUILD_MEMORY_MB // workers)

    def build(statement: str) -> None:
        import psycopg2

        conn = connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                # Index builds sort in memory up to this (server side, this session only).
                cur.execute(f"SET maintenance_work_mem = '{memory_mb}MB'")
                cur.execute(statement)
        except psycopg2.errors.UniqueViolation as exc:
            if statement == primary_key_index_sql(plan, plan.stage_schema):
                # DETAIL names the duplicated key value: a key, so it may be shown.
                detail = (getattr(getattr(exc, "diag", None), "message_detail", None) or "duplicated key").rstrip(".")
                note = _nul_note(plan.primary_key, nul_columns)
                where = "in PostgreSQL" if note else "in the source"
                raise LoadError(f"table {plan.table!r}: the primary key is not unique {where} "
                                f"({', '.join(plan.primary_key)}): {detail}{note}") from None
            # Another unique index: its values may be patient data, so they are withheld.
            index = index_of_statement.get(statement)
            note = _nul_note(index.columns, nul_columns) if index is not None else ""
            raise LoadError(f"table {plan.table!r}: a unique index is not unique in PostgreSQL "
                            f"({statement.split(' ON ')[0].split()[-1]}); values withheld{note}") from None
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clinicflow-index") as pool:
        # Every build finishes (or fails) before this returns; the first failure is raised.
        for future in [pool.submit(build, statement) for statement in statements]:
            future.result()


def finish_full_load(pg_conn: Any, plan: TablePlan, *, watermark: Sequence[str] | None,
                     fingerprint: str | None) -> bool:
    """Attach the primary key (its index built by :func:`build_stage_indexes`) and swap the staging table into raw.

    The table replaced is moved aside, not dropped: a DROP removes its files
    at COMMIT, while the swap's lock keeps every reader of raw.<t> waiting
    (0.3 s for 1M procedurelog rows on this disk, seconds for larger tables).
    Returns True when a table was replaced; dropping :func:`replaced_target`
    after the commit removes it, with no reader waiting.
    """
    stage = stage_target(plan)
    target = quote_qualified(plan.raw_schema, plan.table, "postgres")
    try:
        with pg_conn.cursor() as cur:
            attach = attach_primary_key_sql(plan, plan.stage_schema)
            if attach:
                cur.execute(attach)
            # No ANALYZE here: autovacuum analyzes a freshly filled table within a minute,
            # and an explicit one cost ~0.5 s per million rows of the load.
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (target,))
            replacing = bool(cur.fetchone()[0])
            if replacing:
                # A view on raw.<t> would follow the moved table: refuse as DROP would, before
                # anything moves. The DROP is rolled back with its savepoint (no file is touched).
                cur.execute("SAVEPOINT cf_dependents")
                cur.execute(f"DROP TABLE {target} RESTRICT")
                cur.execute("ROLLBACK TO SAVEPOINT cf_dependents")
                cur.execute(f"ALTER TABLE {target} SET SCHEMA {quote_ident(replaced_schema(plan.stage_schema), 'postgres')}")
            # Readers of raw.<t> wait on this lock for the instant of the swap and
            # then see the new table; nobody sees a partly loaded one.
            cur.execute(f"ALTER TABLE {stage} SET SCHEMA {quote_ident(plan.raw_schema, 'postgres')}")
            _write_state(cur, plan, "full", watermark, fingerprint)
        pg_conn.commit()
    except BaseException as exc:
        pg_conn.rollback()
        import psycopg2

        if isinstance(exc, psycopg2.errors.DependentObjectsStillExist):
            raise LoadError(f"table {plan.table!r}: cannot replace {plan.raw_schema}.{plan.table}: other objects "
                            f"(views) depend on it: {str(exc).strip().splitlines()[-1]}") from None
        raise
    return replacing


def drop_table(connect: Callable[[], Any], target: str) -> None:
    """``DROP TABLE IF EXISTS target`` (a quoted, qualified name) on a connection of its own, committed."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {target}")
        conn.commit()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Incremental load: keyset segments, merged, watermark in the same transaction

@dataclass
class IncrementalStats:
    rows_read: int = 0
    rows_changed: int = 0
    bytes: int = 0
    chunks: int = 0
    watermark: tuple[str, ...] | None = None
    conversions: ConversionCounts = field(default_factory=ConversionCounts)


def _keyset_params(plan: TablePlan, values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for name, value in zip(plan.keyset_columns, values):
        text = _text(value)
        # Integers compared with a string literal would be compared as doubles in MySQL.
        out.append(int(text) if text is not None and plan.column(name).kind is Kind.integer else text)
    return out


def merge_sql(plan: TablePlan, source: str) -> str:
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
    return (f"INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {source} ON CONFLICT ({pk}) DO UPDATE SET {sets} "
            f"WHERE ROW({old}) IS DISTINCT FROM ROW({new})")


def _merge(pg_cur: Any, plan: TablePlan, temp: str) -> None:
    """Run :func:`merge_sql`; two rows of one batch with one key in PostgreSQL fail the table, saying why."""
    import psycopg2

    try:
        pg_cur.execute(merge_sql(plan, temp))
    except psycopg2.errors.CardinalityViolation:
        # Unique in MySQL, equal in PostgreSQL: for text key columns only removed NUL bytes do that
        # (case and trailing spaces already compare equal in MySQL's collations).
        text_keys = [c for c in plan.primary_key if plan.column(c).kind is Kind.text]
        raise LoadError(f"table {plan.table!r}: two rows of one batch have the same primary key in PostgreSQL "
                        f"({', '.join(plan.primary_key)}){_nul_note(plan.primary_key, text_keys)}") from None


def load_incremental(mysql_stream_conn: Any, pg_conn: Any, plan: TablePlan, watermark: Sequence[str] | None,
                     keyset_predicate: Any) -> IncrementalStats:
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
    elif first.kind is Kind.datetime and len(keyset) > 1:
        # A row changed in the same second as the watermark but with a smaller
        # key sorts before it; re-reading the last second(s) catches it, and
        # the merge makes re-reading harmless (same rule as the replication).
        predicate = f"{quote_ident(first.name, 'mysql')} >= %s - INTERVAL {WATERMARK_OVERLAP_SECONDS} SECOND"
        params = [watermark[0]]
    else:
        predicate, params = keyset_predicate(keyset, _keyset_params(plan, watermark), "mysql")
        params = list(params)
    check_booleans(mysql_stream_conn, plan, predicate, params)
    reset_counters(mysql_stream_conn, plan)
    temp = quote_ident(_short_ident(f"cf_merge_{plan.table}"), "postgres")
    select = (f"SELECT {copy_line_sql(plan)}, "
              f"{quote_list(keyset, 'mysql')} FROM {quote_ident(plan.table, 'mysql')} WHERE {predicate} "
              f"ORDER BY {quote_list(keyset, 'mysql')}")
    copy_sql = f"COPY {temp} ({quote_list(plan.column_names, 'postgres')}) FROM STDIN"
    with pg_conn.cursor() as pg_cur:
        pg_cur.execute(f"DROP TABLE IF EXISTS {temp}")
        pg_cur.execute(f"CREATE TEMP TABLE {temp} (LIKE {quote_qualified(plan.raw_schema, plan.table, 'postgres')}) "
                       "ON COMMIT DELETE ROWS")
        pg_conn.commit()
        my_cur = mysql_stream_conn.cursor()
        my_cur.execute(select, tuple(params))
        reader = LineReader(my_cur, segment_rows=plan.batch_size)
        try:
            while True:
                segment = CopySource(reader, plan.batch_size)
                try:
                    pg_cur.copy_expert(copy_sql, segment, size=COPY_READ_SIZE)
                except Exception as exc:
                    raise _copy_error(plan, exc) from exc
                if segment.rows == 0:
                    pg_conn.rollback()
                    break
                _merge(pg_cur, plan, temp)
                changed = pg_cur.rowcount
                new_mark = tuple(_text(v) or "" for v in segment.last_keyset or ())
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
    return stats
