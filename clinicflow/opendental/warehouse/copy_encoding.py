"""Server-side COPY encoding: the MySQL expressions that turn each row into one line of PostgreSQL COPY text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clinicflow.connectors.mysql.sessions import catalog_int, catalog_text
from clinicflow.core.dbapi import Connection
from clinicflow.core.sql import quote_ident, quote_list
from clinicflow.opendental.streamed_values import Encoding, RowLayout
from clinicflow.opendental.tables.typemap import (
    Kind,
    PgColumn,
    is_streamed,
)
from clinicflow.opendental.warehouse.load_errors import BooleanValueError
from clinicflow.opendental.warehouse.load_plan import LoadPlan

# COPY text-format pieces, as binary literals so no SQL-mode or escaping rule
# of the MySQL session can change them.
_NULL = "X'5C4E'"  # \N


_SEPARATOR = "X'09'"  # tab


# The regular expression [\\<tab><LF><CR><NUL>] (hex, so no SQL mode changes it): a text value
# matching it must be escaped, or lose its NUL bytes.
_NEEDS_ESCAPE = "X'5B5C5C090A0D005D'"


# A JSON "\u0000" escape (an odd number of backslashes before u0000; "\\u0000" is a literal
# backslash and text): jsonb rejects it, so it is removed with the backslashes' parity kept.
_JSON_NUL_ESCAPE = "X'" + rb"(?<!\\)((?:\\\\)*)\\u0000".hex().upper() + "'"


_JSON_NUL_KEEP = "X'" + rb"\1".hex().upper() + "'"


_JSON_NUL_TEXT = "X'" + rb"\u0000".hex().upper() + "'"


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
    ``MONTH(d) = 0 OR DAYOFMONTH(d) = 0`` took five, for half the server's CPU
    (figures: bench/results/notes-from-comments.md).
    """
    return f"TO_DAYS({quoted}) IS NULL"


@dataclass(frozen=True)
class Counter:
    """A session variable the encoding query adds to when it converts a value (zero date, NUL bytes)."""

    variable: str  # e.g. @cf_conv_3
    column: str
    counter: str  # "zero_dates" | "nul_bytes"


def conversion_counters(plan: LoadPlan) -> list[Counter]:
    """One counter per column whose values can be converted on the way."""
    out = []
    for index, col in enumerate(plan.columns):
        if col.kind in (Kind.date, Kind.datetime, Kind.instant):
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
    q = col.carried_sql(quote_ident(col.name, "mysql"))
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
    if kind in (Kind.date, Kind.datetime, Kind.instant):
        # An instant is read in the load's UTC session and sent with its offset (+00).
        value = f"CONCAT({q}, X'2B3030')" if kind is Kind.instant else q
        if counter is None:
            return f"IF({q} IS NULL OR {zero_date_test(q)}, {_NULL}, {value})"
        not_null = f"{q} IS NOT NULL AND " if col.source.nullable else ""
        return f"IF({not_null}{zero_date_test(q)} AND ({counter} := {counter} + 1), {_NULL}, {or_null(value)})"
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
        escaped = (
            f"IF(INSTR({binary}, X'00') > 0 AND ({counter} := {counter} + {removed}), "
            f"{_escaped_text(without_nul)}, {_escaped_text(binary)})"
        )
        # Most values need none of that: LENGTH and one RLIKE skip the ten calls (see docs/loading.md).
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
        removed = f"(LENGTH({binary}) - LENGTH({no_bytes})) + (LENGTH({no_bytes}) - LENGTH({cleaned})) DIV 6"
        count = f" AND ({counter} := {counter} + {removed}) IS NOT NULL"
    test = f"(INSTR({binary}, X'00') > 0 OR INSTR({binary}, {_JSON_NUL_TEXT}) > 0)"
    return f"IF({test}{count}, {_escaped_text(cleaned)}, {_escaped_text(binary)})"


def streamed_load_columns(plan: LoadPlan) -> list[PgColumn]:
    """Columns selected raw and escaped by the client (see clinicflow.opendental.streamed_values)."""
    return [c for c in plan.columns if is_streamed(c.source.data_type)]


def copy_column_names(plan: LoadPlan) -> list[str]:
    """Columns in the order of a COPY line: server-encoded ones first, then the streamed ones."""
    streamed = streamed_load_columns(plan)
    return [c.name for c in plan.columns if c not in streamed] + [c.name for c in streamed]


_STREAMED_ENCODING: dict[Kind, Encoding] = {Kind.binary: "bytea", Kind.text: "text", Kind.json: "json"}


def copy_row_layout(plan: LoadPlan, keys: Sequence[str] = ()) -> RowLayout | None:
    """How rows of :func:`copy_items_sql` become COPY lines; None when every column is server-encoded."""
    streamed = streamed_load_columns(plan)
    if not streamed:
        return None
    return RowLayout(
        plan.table,
        len(streamed) < len(plan.columns),
        [(c.name, _STREAMED_ENCODING[c.kind]) for c in streamed],
        list(keys),
    )


def copy_line_sql(plan: LoadPlan, *, counted: bool = True) -> str:
    """The CONCAT_WS(...) select item producing the COPY line of the server-encoded columns."""
    counters = {c.column: c.variable for c in conversion_counters(plan)} if counted else {}
    streamed = streamed_load_columns(plan)
    exprs = ", ".join(copy_expression(c, counters.get(c.name)) for c in plan.columns if c not in streamed)
    return f"CONCAT_WS({_SEPARATOR}, {exprs})"


def copy_items_sql(plan: LoadPlan, *, counted: bool = True) -> str:
    """The select items of a COPY query: the line of server-encoded columns, then the streamed columns raw."""
    streamed = streamed_load_columns(plan)
    items = [copy_line_sql(plan, counted=counted)] if len(streamed) < len(plan.columns) else []
    items += [quote_ident(c.name, "mysql") for c in streamed]
    return ", ".join(items)


def copy_select_sql(
    plan: LoadPlan,
    predicate: str = "1=1",
    order_by: Sequence[str] = (),
    *,
    counted: bool = True,
    extra: Sequence[str] = (),
) -> str:
    """The MySQL query producing one COPY line (or, with streamed columns, row) per row of the chunk.

    ``extra`` columns (keys) follow the items.
    """
    items = copy_items_sql(plan, counted=counted) + "".join(", " + quote_ident(c, "mysql") for c in extra)
    sql = f"SELECT {items} FROM {quote_ident(plan.table, 'mysql')} WHERE {predicate}"
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

    def merge(self, other: ConversionCounts) -> ConversionCounts:
        for column, counters in other.per_column.items():
            for counter, value in counters.items():
                self.add(column, counter, value)
        return self

    def total(self, counter: str) -> int:
        return sum(c.get(counter, 0) for c in self.per_column.values())


def reset_counters_sql(counters: Sequence[Counter]) -> str:
    """``SET @cf_conv_i = 0, ...`` for the counters (which must not be empty)."""
    return "SET " + ", ".join(f"{c.variable} = 0" for c in counters)


def reset_counters(mysql_conn: Connection, plan: LoadPlan) -> None:
    counters = conversion_counters(plan)
    if counters:
        with mysql_conn.cursor() as cur:
            cur.execute(reset_counters_sql(counters))


def read_counters(mysql_conn: Connection, plan: LoadPlan) -> ConversionCounts:
    """The conversions counted by the encoding query just finished on this connection."""
    counts = ConversionCounts()
    counters = conversion_counters(plan)
    if counters:
        with mysql_conn.cursor() as cur:
            cur.execute("SELECT " + ", ".join(c.variable for c in counters))
            row = cur.fetchone()
        for counter, value in zip(counters, row, strict=False):
            counts.add(counter.column, counter.counter, catalog_int(value) or 0)
    return counts


def check_booleans(mysql_conn: Connection, plan: LoadPlan, predicate: str = "1=1", params: Sequence[Any] = ()) -> None:
    """Fail the table, naming key and value, when a boolean_columns column holds other than 0/1."""
    booleans = [c.name for c in plan.columns if c.kind is Kind.boolean_int]
    if not booleans:
        return
    key = list(plan.primary_key) or booleans
    bad = " OR ".join(f"{quote_ident(b, 'mysql')} NOT IN (0, 1)" for b in booleans)
    with mysql_conn.cursor() as cur:
        cur.execute(
            f"SELECT {quote_list(key + booleans, 'mysql')} FROM {quote_ident(plan.table, 'mysql')} "
            f"WHERE ({predicate}) AND ({bad}) LIMIT 1",
            tuple(params),
        )
        row = cur.fetchone()
    if row is None:
        return
    key_text = ", ".join(f"{k}={catalog_text(v)}" for k, v in zip(key, row[: len(key)], strict=False))
    for name, value in zip(booleans, row[len(key) :], strict=False):
        if catalog_text(value) not in (None, "0", "1"):
            raise BooleanValueError(
                f"table {plan.table!r}: column {name!r} is listed in boolean_columns but the row with "
                f"{key_text} holds {catalog_text(value)} (only 0 and 1 can be loaded as boolean)"
            )
