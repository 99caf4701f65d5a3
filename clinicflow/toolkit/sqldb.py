"""SQL extractor (MySQL/MariaDB, PostgreSQL) and PostgreSQL loader over the project's connection blocks.

Tools take any object with ``connect(...)`` and ``describe()`` (the
``MySQLServer``/``PostgresServer`` blocks satisfy it), never a Prefect import.
Reads are server-side: pymysql's unbuffered cursor, a psycopg2 named cursor,
fetched ``batch_size`` rows at a time, so memory is bounded by the batch.
Query parameters are named (``%(start)s``) and filled from the run: the
time scope ``start``/``end`` and the pipeline parameters.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol

from clinicflow.connectors.connections import connected, transaction
from clinicflow.core.dbapi import PgCursor, column_names
from clinicflow.core.errors import one_line
from clinicflow.core.sql import quote_ident, quote_list, quote_qualified
from clinicflow.toolkit.base import (
    NO_TABLE_HINT,
    Batch,
    DeadLetter,
    RunContext,
    ToolkitError,
    json_default,
    nested_as_json,
)


class Connectable(Protocol):
    def connect(self, **kwargs: Any) -> Any: ...

    def describe(self) -> str: ...


def query_parameters(ctx: RunContext, query: str) -> dict[str, Any] | None:
    """Named parameters a query may use: the pipeline parameters, then ``start``/``end`` of the time scope.

    None when the query names none, so a literal ``%`` (``LIKE 'a%'``) needs no escaping.
    """
    if "%(" not in query:
        return None
    return {**ctx.parameters, "start": ctx.start, "end": ctx.end}


class SqlExtractor:
    """Stream the rows of ``query`` in batches of ``batch_size``."""

    def __init__(
        self, server: Connectable, query: str, *, dialect: Literal["mysql", "postgres"], batch_size: int = 10_000
    ) -> None:
        self.server, self.query, self.dialect, self.batch_size = server, query, dialect, batch_size

    def extract(self, ctx: RunContext) -> Iterator[Batch]:
        try:
            yield from self._batches(ctx)
        except ToolkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - connecting or reading: pymysql's and psycopg2's errors alike
            # It came through raw ("OperationalError(1049, ...)"), naming neither the connection nor the step.
            raise ToolkitError(f"SQL extract from {self.server.describe()} failed: {one_line(exc)}") from None

    def _batches(self, ctx: RunContext) -> Iterator[Batch]:
        params = query_parameters(ctx, self.query)
        mysql = self.dialect == "mysql"
        with connected(self.server, **({"streaming": True} if mysql else {})) as conn:
            if mysql:
                cursor = conn.cursor()
            else:
                conn.set_session(readonly=True)
                cursor = conn.cursor(name=f"toolkit_{uuid.uuid4().hex[:12]}")  # named: a server-side cursor
                cursor.itersize = self.batch_size
            with cursor:
                cursor.execute(self.query, params)
                columns: tuple[str, ...] | None = None
                while True:
                    rows = cursor.fetchmany(self.batch_size)
                    if columns is None:
                        columns = tuple(column_names(cursor))
                    if not rows:
                        return
                    yield Batch(columns, [tuple(r) for r in rows])


def _copy_field(value: Any) -> str:
    # CSV for COPY: NULL is an unquoted empty field, every value is quoted.
    if value is None:
        return ""
    if isinstance(value, list) and not _holds_nested(value):
        value = _array_literal(value)  # as psycopg2 adapts it for an upsert: a text[] / int[] column takes it
    value = nested_as_json(value)
    if isinstance(value, bool):
        text = "t" if value else "f"
    elif isinstance(value, bytes):
        text = "\\x" + value.hex()
    else:
        text = str(value)
    return '"' + text.replace('"', '""') + '"'


def _upsert_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # An object (or a list holding one) as JSON text, as COPY writes it; a list of scalars stays an ARRAY.
    return tuple(
        nested_as_json(v) if isinstance(v, dict) or (isinstance(v, list) and _holds_nested(v)) else v for v in row
    )


_ISO_DATE = re.compile(r"\s*\d{4}-\d{2}-\d{2}(?:[T ]|\s*$)")


def _check_iso_dates(batch: Batch, date_columns: frozenset[str], before: int, target: str) -> None:
    """Text into a date/time column must be ISO 8601: PostgreSQL reads any other form by its DateStyle, so
    ``05.03.2024`` (5 March in Europe) became 3 May under MDY, without a word."""
    for i, name in enumerate(batch.columns):
        if name not in date_columns:
            continue
        for n, row in enumerate(batch.rows):
            value = row[i]
            if isinstance(value, str) and value.strip() and not _ISO_DATE.match(value):
                raise ToolkitError(
                    f"postgres load into {target}: row {before + n}, column {name!r}: text that is not an ISO 8601 "
                    f"date (YYYY-MM-DD; value not shown): PostgreSQL would read its day and month by its DateStyle; "
                    f"convert it first with a `types` transform ({name}: 'date:%d.%m.%Y' or the file's format)"
                )


class _JsonText(str):
    """A value already written as JSON text: never an ARRAY literal, never quoted again."""


def _as_json(batch: Batch, json_columns: frozenset[str]) -> Batch:
    """The batch with its json/jsonb columns' values as JSON text: a list of strings, ``[]`` and a plain string
    are JSON too (as an ARRAY literal ``[]`` became ``{}``, an object, and ``["a"]`` failed)."""
    at = [i for i, name in enumerate(batch.columns) if name in json_columns]
    if not at:
        return batch

    def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for i in at:
            if values[i] is not None and not isinstance(values[i], _JsonText):
                values[i] = _JsonText(json.dumps(values[i], ensure_ascii=False, default=json_default))
        return tuple(values)

    return Batch(batch.columns, [convert(row) for row in batch.rows])


def _holds_nested(values: list[Any]) -> bool:
    return any(isinstance(v, (dict, list)) for v in values)


def _array_literal(values: list[Any]) -> str:
    """A PostgreSQL array literal of scalars: ``{"a","b \\"c\\"",NULL,3}``."""

    def element(v: Any) -> str:
        if v is None:
            return "NULL"
        text = ("t" if v else "f") if isinstance(v, bool) else str(v)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(element(v) for v in values) + "}"


class PostgresLoader:
    """Write batches into ``schema.table``: ``insert`` by COPY, or ``upsert`` on ``key_columns``.

    One transaction for the whole stream: a failure leaves the table as it was.
    ``create_sql`` (run first, e.g. ``CREATE TABLE IF NOT EXISTS``) lets a
    pipeline own its table.
    """

    def __init__(
        self,
        server: Connectable,
        table: str,
        *,
        schema: str = "public",
        mode: Literal["insert", "upsert"] = "insert",
        key_columns: list[str] | None = None,
        create_sql: str | None = None,
    ) -> None:
        if mode == "upsert" and not key_columns:
            raise ToolkitError(f"postgres loader {schema}.{table}: upsert needs key_columns")
        self.server, self.table, self.schema, self.mode = server, table, schema, mode
        self.key_columns, self.create_sql = list(key_columns or []), create_sql

    def load(self, batches: Iterable[Batch], ctx: RunContext) -> int:
        target = quote_qualified(self.schema, self.table, "postgres")
        written = 0
        try:
            with transaction(self.server) as conn, conn.cursor() as cur:
                if self.create_sql:
                    # Serialised: two steps' "CREATE SCHEMA/TABLE IF NOT EXISTS" at once can both try to create it.
                    cur.execute("SELECT pg_advisory_xact_lock(hashtext('clinicflow.toolkit.create_sql'))")
                    cur.execute(self.create_sql)
                json_columns, date_columns = self._typed_columns(cur)
                for batch in batches:
                    if not batch.rows:
                        continue
                    _check_iso_dates(batch, date_columns, written, f"{self.schema}.{self.table}")
                    batch = _as_json(batch, json_columns)
                    if self.mode == "insert":
                        self._copy(cur, target, batch)
                    else:
                        self._upsert(cur, target, batch)
                    written += len(batch)
        except Exception as exc:
            if isinstance(exc, ToolkitError):
                raise
            hint = NO_TABLE_HINT if getattr(exc, "pgcode", None) == "42P01" and not self.create_sql else ""
            raise ToolkitError(
                f"postgres load into {self.schema}.{self.table} on {self.server.describe()} failed "
                f"after {written} rows: {one_line(exc)}{hint}"
            ) from None
        return written

    def _typed_columns(self, cur: PgCursor) -> tuple[frozenset[str], frozenset[str]]:
        """The target's json/jsonb columns (every value written as JSON, ``[]`` included) and its date/time
        columns (text values there must be ISO 8601)."""
        cur.execute(
            "SELECT a.attname, a.atttypid IN ('json'::regtype, 'jsonb'::regtype) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid IN "
            "('json'::regtype, 'jsonb'::regtype, 'date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype)",
            (self.schema, self.table),
        )
        rows = cur.fetchall()
        return frozenset(name for name, is_json in rows if is_json), frozenset(
            name for name, is_json in rows if not is_json
        )

    def _copy(self, cur: PgCursor, target: str, batch: Batch) -> None:
        buffer = io.StringIO()
        for row in batch.rows:
            buffer.write(",".join(_copy_field(v) for v in row))
            buffer.write("\n")
        buffer.seek(0)
        cur.copy_expert(
            f"COPY {target} ({quote_list(list(batch.columns), 'postgres')}) FROM STDIN WITH (FORMAT csv)", buffer
        )

    def _upsert(self, cur: PgCursor, target: str, batch: Batch) -> None:
        from psycopg2.extras import execute_values

        missing = [k for k in self.key_columns if k not in batch.columns]
        if missing:
            raise ToolkitError(
                f"postgres upsert into {self.schema}.{self.table}: key columns {missing} not in the batch"
            )
        others = [c for c in batch.columns if c not in self.key_columns]
        action = (
            (
                "DO UPDATE SET "
                + ", ".join(f"{quote_ident(c, 'postgres')} = EXCLUDED.{quote_ident(c, 'postgres')}" for c in others)
            )
            if others
            else "DO NOTHING"
        )
        sql = (
            f"INSERT INTO {target} ({quote_list(list(batch.columns), 'postgres')}) VALUES %s "
            f"ON CONFLICT ({quote_list(self.key_columns, 'postgres')}) {action}"
        )
        positions = [batch.columns.index(k) for k in self.key_columns]
        # One row per key: a batch naming a key twice would make ON CONFLICT fail; the later row wins.
        latest = {tuple(row[p] for p in positions): row for row in batch.rows}
        execute_values(cur, sql, [_upsert_row(row) for row in latest.values()], page_size=1000)


class PostgresDeadLetters:
    """Dead letters as rows of a PostgreSQL table (created if missing): the quarantine analysts query.

    One short autocommitted insert per rejected row: dead letters are the exception, and each
    one is kept even if the step fails later.
    """

    def __init__(
        self, server: Connectable, *, pipeline: str, schema: str = "public", table: str = "toolkit_dead_letters"
    ) -> None:
        self.server, self.pipeline, self.schema, self.table = server, pipeline, schema, table
        self._ready = False

    def put(self, letter: DeadLetter) -> None:
        target = quote_qualified(self.schema, self.table, "postgres")
        with connected(self.server) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                if not self._ready:
                    cur.execute(
                        f"CREATE TABLE IF NOT EXISTS {target} (id bigserial PRIMARY KEY, "
                        "pipeline text NOT NULL, "
                        "step text NOT NULL, row_index bigint, column_name text, error text NOT NULL, "
                        "row_data jsonb, created_at timestamptz NOT NULL DEFAULT now())"
                    )
                    cur.execute(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS run_id text")
                    self._ready = True
                cur.execute(
                    f"INSERT INTO {target} (pipeline, run_id, step, row_index, column_name, error, row_data)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)",
                    (
                        self.pipeline,
                        letter.run_id,
                        letter.step,
                        letter.row_index,
                        letter.column,
                        letter.error,
                        json.dumps(letter.row, default=str),
                    ),
                )
