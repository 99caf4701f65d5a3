"""Source-side encoding into LOAD DATA's text format, chunk files, and loading them into the replica."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, cast

from clinicflow.connectors.mysql import client
from clinicflow.connectors.mysql.catalog import INTEGER_TYPES, CatalogColumn
from clinicflow.connectors.mysql.sessions import catalog_text, raw_connected
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.core.sql import quote_ident
from clinicflow.opendental.streamed_values import BLOCK_BYTES, RowLayout, carry_error
from clinicflow.opendental.tables.typemap import is_streamed

# A chunk file holding streamed values is loaded and emptied once it reaches this size, so disk and
# LOAD DATA stay bounded by bytes whatever the row count of the range.
LOAD_FILE_BYTES = 16 * BLOCK_BYTES

# Types whose text form never holds a tab, newline, backslash or NUL: no REPLACE calls (see docs/loading.md).
PLAIN_TEXT_TYPES = INTEGER_TYPES | frozenset(
    {"float", "double", "decimal", "date", "datetime", "timestamp", "time", "year", "bit"}
)


def encode_column_sql(col: CatalogColumn) -> str:
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
        escaped = (
            f"REPLACE(REPLACE(REPLACE(REPLACE({raw}, '\\\\', '\\\\\\\\'), '\\t', '\\\\t'), "
            "'\\n', '\\\\n'), CHAR(0), '\\\\0')"
        )
    # CONCAT_WS skips NULL arguments, so a nullable column must become \N
    # explicitly; a NOT NULL column cannot be NULL and skips the IFNULL.
    return f"IFNULL({escaped}, '\\\\N')" if col.nullable else escaped


def streamed_replica_columns(columns: Sequence[CatalogColumn]) -> list[CatalogColumn]:
    """The columns selected raw and escaped by the client (see clinicflow.opendental.streamed_values)."""
    return [c for c in columns if is_streamed(c.data_type)]


def load_order(columns: Sequence[CatalogColumn]) -> list[CatalogColumn]:
    """Columns in the order of a line: server-encoded ones first, then the streamed ones."""
    streamed = streamed_replica_columns(columns)
    return [c for c in columns if c not in streamed] + streamed


def row_layout(table: str, columns: Sequence[CatalogColumn], extra: Sequence[str] = ()) -> RowLayout | None:
    """How rows of :func:`encoded_select_sql` are written; None when no column is streamed (one line per row)."""
    streamed = streamed_replica_columns(columns)
    if not streamed:
        return None
    return RowLayout(table, len(streamed) < len(columns), [(c.name, "load") for c in streamed], list(extra))


def encoded_select_sql(
    table: str, columns: Sequence[CatalogColumn], extra: Sequence[str] = (), from_sql: str | None = None
) -> str:
    """``SELECT <encoded line>[, streamed columns][, extra key columns] FROM table`` (WHERE/ORDER added by callers).

    ``from_sql``: another FROM clause whose columns are the table's (e.g. ``keys_first_from``).

    With streamed columns the session must send bytes unconverted (:func:`prepare_streaming`); the
    key columns are then converted to UTF-8 explicitly.
    """
    streamed = streamed_replica_columns(columns)
    items = []
    plain = [c for c in columns if c not in streamed]
    if plain:
        items.append("CONCAT_WS('\\t', " + ", ".join(encode_column_sql(c) for c in plain) + ")")
    items += [quote_ident(c.name, "mysql") for c in streamed]
    if streamed:
        items += [f"CONVERT({quote_ident(c, 'mysql')} USING utf8mb4)" for c in extra]
    else:
        items += [quote_ident(c, "mysql") for c in extra]
    return f"SELECT {', '.join(items)} FROM {from_sql or quote_ident(table, 'mysql')}"


def prepare_streaming(conn: Connection, layout: RowLayout | None) -> None:
    """Streamed text must arrive as stored (latin1 stays latin1): no result charset conversion."""
    if layout is not None:
        with conn.cursor() as cur:
            cur.execute("SET SESSION character_set_results = NULL")


def load_columns_clause(columns: Sequence[CatalogColumn]) -> str:
    """Column list for LOAD DATA in line order; BIT columns go through a variable (LOAD DATA cannot parse b'...')."""
    names, sets = [], []
    for i, col in enumerate(load_order(columns)):
        if col.is_bit:
            names.append(f"@bit{i}")
            sets.append(f"{quote_ident(col.name, 'mysql')} = CAST(@bit{i} AS UNSIGNED)")
        else:
            names.append(quote_ident(col.name, "mysql"))
    clause = "(" + ", ".join(names) + ")"
    if sets:
        clause += " SET " + ", ".join(sets)
    return clause


def load_file(dst_conn: Connection, path: str, target: str, columns: Sequence[CatalogColumn]) -> int:
    """LOAD DATA LOCAL INFILE ``path`` into ``target``; return rows loaded."""
    with dst_conn.cursor() as cur:
        cur.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote_ident(target, 'mysql')} CHARACTER SET binary "
            f"{load_columns_clause(columns)}",
            (path,),
        )
        return int(cur.rowcount)


def stream_to_file(
    src_stream_conn: Connection,
    sql: str,
    params: Sequence[Any],
    path: str,
    key_count: int,
    layout: RowLayout | None = None,
    flush: Callable[[], object] | None = None,
) -> tuple[int, list[str | None] | None]:
    """Run an encoded SELECT and write its lines to ``path``; return rows and the last row's key values.

    With a ``layout`` (streamed columns) the values are escaped here, and once the file reaches
    ``LOAD_FILE_BYTES`` ``flush()`` loads it and the file starts again empty.
    """
    rows = 0
    last: Sequence[Any] | None = None
    with src_stream_conn.cursor() as cur, open(path, "wb", buffering=1 << 20) as out:
        cur.execute(sql, list(params))
        write = out.write
        if layout is None:
            for row in cur:
                write(row[0])
                write(b"\n")
                rows += 1
                last = row
        else:
            written = 0
            while True:
                try:
                    row = cur.fetchone()
                except Exception as exc:
                    raise carry_error(layout, last, exc) from exc
                if row is None:
                    break
                for piece in layout.pieces(row):
                    write(piece)
                    written += len(piece)
                write(b"\n")
                rows += 1
                last = row
                if flush is not None and written >= LOAD_FILE_BYTES:
                    out.flush()
                    flush()
                    out.seek(0)
                    out.truncate()
                    written = 0
    first_key = layout.first_key if layout is not None else 1
    key = (
        [catalog_text(v) for v in last[first_key : first_key + key_count]] if (last is not None and key_count) else None
    )
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


def _typed_key(values: Sequence[str | None], key_columns: Sequence[str], columns: Sequence[CatalogColumn]) -> list[Any]:
    # Integers go as Python ints: compared with a string, MySQL would use
    # doubles and lose precision above 2**53.
    types = {c.name: c for c in columns}
    return [int(cast(str, v)) if types[name].is_integer else v for name, v in zip(key_columns, values, strict=False)]


def export_to_file(
    src: MySQLServerLike,
    sql: str,
    params: Sequence[Any],
    path: str,
    layout: RowLayout | None = None,
    flush: Callable[[], object] | None = None,
) -> bool:
    """Write the encoded lines of ``sql`` to ``path``; True when there are rows left in it to load.

    Streamed columns (``layout``) are read through pymysql: the C client's text output cannot
    carry raw bytes.
    """
    if layout is not None:
        with raw_connected(src, streaming=True) as src_conn:
            prepare_streaming(src_conn, layout)
            stream_to_file(src_conn, sql, params, path, len(layout.keys), layout, flush)
        return os.path.getsize(path) > 0
    if client.client_binary():
        # The C client moves the encoded lines (see clinicflow.connectors.mysql.client).
        with open(path, "wb") as out:
            client.export_query(src, client.inline_params(sql, list(params)), out)
        return os.path.getsize(path) > 0
    with raw_connected(src, streaming=True) as src_conn:
        return stream_to_file(src_conn, sql, params, path, 0)[0] > 0


def export_and_load(
    src: MySQLServerLike,
    dst_conn: Connection,
    table: str,
    columns: Sequence[CatalogColumn],
    where: str,
    params: Sequence[Any],
    target: str,
    keys: Sequence[str] = (),
) -> int:
    """Copy the rows of ``table`` matching ``where`` into ``target`` through a chunk file; return rows loaded.

    ``keys`` (the primary key) name the row in the error when a streamed value cannot be read.
    """
    layout = row_layout(table, columns, keys)
    sql = encoded_select_sql(table, columns, keys if layout is not None else ()) + f" WHERE {where}"
    loaded = 0
    with ChunkFile(table) as path:

        def flush() -> None:
            nonlocal loaded
            loaded += load_file(dst_conn, path, target, columns)

        if export_to_file(src, sql, params, path, layout, flush):
            flush()
    return loaded


def _merge_sql(table: str, stage: str, columns: Sequence[CatalogColumn]) -> str:
    cols = ", ".join(quote_ident(c.name, "mysql") for c in columns)
    updates = ", ".join(f"{quote_ident(c.name, 'mysql')} = VALUES({quote_ident(c.name, 'mysql')})" for c in columns)
    return (
        f"INSERT INTO {quote_ident(table, 'mysql')} ({cols}) SELECT {cols} FROM {quote_ident(stage, 'mysql')} "
        f"ON DUPLICATE KEY UPDATE {updates}"
    )
