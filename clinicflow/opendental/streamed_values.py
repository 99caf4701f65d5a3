"""Large binary, text and JSON values carried as bytes: selected raw, escaped by the client, in slices.

Why: the server-side encodings (REPLACE, HEX, CONCAT_WS) return NULL for a result longer than
``max_allowed_packet`` (warning 1301 only, so a 9 MB blob arrived as NULL), and MariaDB's REPLACE
is quadratic in the value's length. A plain SELECT of the column sends its bytes as stored; the
client escapes them with ``bytes.replace`` / ``binascii.hexlify`` (linear, in C) one slice at a
time, so a value is held once and its escaped form never whole. Which columns: the source types
in :data:`~clinicflow.opendental.tables.typemap.STREAMED_TYPES`.

A row of such a query is ``(line of the other columns, streamed values..., key values...)``
(no line when every column is streamed); :class:`RowLayout` turns it into output pieces.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from clinicflow.core.errors import ClinicflowError, one_line
from clinicflow.core.sql import quote_ident

# Escaped and written in slices of this many bytes: memory holds a value once, plus a slice or two.
SLICE_BYTES = 1 << 20

# Output blocks handed between threads / to COPY: bounded by bytes, not rows (a 16 MB row times
# a chunk's row count would not fit).
BLOCK_BYTES = 4 << 20

# How a streamed value is written: LOAD DATA text (replica), COPY text as bytea, text or jsonb.
Encoding = Literal["load", "bytea", "text", "json"]

_NULL = b"\\N"

# A JSON "\u0000" escape (an odd number of backslashes before u0000): jsonb rejects it; removed
# with the backslashes' parity kept (same rule as the server-side encoding in copy_encoding).
_JSON_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


class StreamedValueError(ClinicflowError):
    """A value could not be carried; the message names table, column and the row's key (never the value)."""


def _slices(value: bytes) -> Iterator[bytes]:
    if len(value) <= SLICE_BYTES:
        yield value
        return
    view = memoryview(value)
    for start in range(0, len(value), SLICE_BYTES):
        yield bytes(view[start : start + SLICE_BYTES])


def load_data_escape(data: bytes) -> bytes:
    """LOAD DATA's default escaping (backslash first, so added escapes are not doubled)."""
    return data.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\0", b"\\0")


def copy_text_escape(data: bytes) -> bytes:
    """COPY text escaping of a value with no NUL byte."""
    return data.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def json_without_nul(data: bytes) -> tuple[bytes, int]:
    """A JSON text without NUL bytes and ``\\u0000`` escapes (jsonb accepts neither), and how many were removed."""
    if b"\0" not in data and b"\\u0000" not in data:
        return data, 0
    no_bytes = data.replace(b"\0", b"")
    removed = len(data) - len(no_bytes)
    cleaned = _JSON_NUL_ESCAPE.sub(rb"\1", no_bytes)
    return cleaned, removed + (len(no_bytes) - len(cleaned)) // 6


@dataclass
class RowLayout:
    """Where the pieces of a streamed row are, and how each streamed value is written."""

    table: str
    has_line: bool
    streamed: list[tuple[str, Encoding]]
    keys: list[str] = field(default_factory=list)
    nul_bytes: dict[str, int] = field(default_factory=dict)  # text/json: NULs removed, per column

    @property
    def first_key(self) -> int:
        return int(self.has_line) + len(self.streamed)

    def key_values(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(row[self.first_key :])

    def describe_key(self, row: Sequence[Any] | None) -> str:
        if row is None or not self.keys:
            return "the first row"
        values = [
            v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v) for v in self.key_values(row)
        ]
        return ", ".join(f"{k}={v}" for k, v in zip(self.keys, values, strict=False))

    def pieces(self, row: Sequence[Any]) -> Iterator[bytes]:
        """The row's output line (without its newline) in pieces of at most about two slices."""
        index = 0
        if self.has_line:
            yield row[0]
            index = 1
        for position, (name, encoding) in enumerate(self.streamed):
            if index or position:
                yield b"\t"
            value = row[index + position]
            if value is None:
                yield _NULL
            elif isinstance(value, str):  # a driver that decoded text: carried as its UTF-8 bytes
                yield from self._value_pieces(name, encoding, value.encode("utf-8"))
            else:
                yield from self._value_pieces(name, encoding, bytes(value))

    def _value_pieces(self, name: str, encoding: Encoding, value: bytes) -> Iterator[bytes]:
        if encoding == "load":
            for part in _slices(value):
                yield load_data_escape(part)
        elif encoding == "bytea":
            yield b"\\\\x"
            for part in _slices(value):
                yield binascii.hexlify(part)
        elif encoding == "text":
            removed = 0
            for part in _slices(value):
                if b"\0" in part:
                    before = len(part)
                    part = part.replace(b"\0", b"")
                    removed += before - len(part)
                yield copy_text_escape(part)
            if removed:
                self.nul_bytes[name] = self.nul_bytes.get(name, 0) + removed
        else:
            cleaned, removed = json_without_nul(value)
            if removed:
                self.nul_bytes[name] = self.nul_bytes.get(name, 0) + removed
            for part in _slices(cleaned):
                yield copy_text_escape(part)

    def line(self, row: Sequence[Any]) -> bytes:
        """The whole output line (for rows known to be small)."""
        return b"".join(self.pieces(row))


def carry_error(layout: RowLayout, last_row: Sequence[Any] | None, exc: BaseException) -> StreamedValueError:
    """The table-naming error for a streamed read that failed (a value the server could not send)."""
    columns = ", ".join(name for name, _ in layout.streamed)
    after = "the first row" if last_row is None else f"the row after {layout.describe_key(last_row)}"
    return StreamedValueError(
        f"table {layout.table!r}: a value of column(s) {columns} could not be read at {after} "
        f"({one_line(exc)}); raise the server's "
        "max_allowed_packet above the largest value"
    )


def keys_first_from(table_sql: str, key_columns: Sequence[str], predicate: str, order_limit: str = "") -> str:
    """A FROM clause: the keys matching ``predicate`` first, then only those rows read whole, by key.

    A scan that selects the streamed columns reads every value (InnoDB fetches the columns of the
    select list for each row it examines). ``key IN (subquery)`` is not enough: MariaDB flattens it
    into a semi-join and may scan the table first (2,000 rows of 200 MB read for 10 changed ones);
    STRAIGHT_JOIN reads the narrow key scan first, then each matching row by its key. The keys are
    renamed (``cf_k0``...), so the select list's column names still name the table's columns.
    """
    keys = ", ".join(f"{quote_ident(k, 'mysql')} AS cf_k{i}" for i, k in enumerate(key_columns))
    on = " AND ".join(f"{table_sql}.{quote_ident(k, 'mysql')} = cf_keys.cf_k{i}" for i, k in enumerate(key_columns))
    return (
        f"(SELECT {keys} FROM {table_sql} AS cf_scan WHERE {predicate}{order_limit}) AS cf_keys "
        f"STRAIGHT_JOIN {table_sql} ON {on}"
    )
