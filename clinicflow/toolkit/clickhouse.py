"""ClickHouse extractor and loader through clickhouse-connect (a server URL, or chDB in process).

``url`` is ``http(s)://user:password@host:8123`` for a server or
``chdb:///path/to/dir`` for the embedded engine (tests, the demo); the same
code runs against both. Upserts: ``replacing`` inserts with a version column
into a ``ReplacingMergeTree(version)`` table (the newest version of a key wins
at merge time; read with ``FINAL``); ``delete_insert`` deletes the batch's key
set, then inserts it (for plain MergeTree tables).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from clinicflow.connectors.connections import connected
from clinicflow.core.errors import one_line
from clinicflow.core.sql import quote_ident, quote_list
from clinicflow.toolkit.base import NO_TABLE_HINT, Batch, RunContext, ToolkitError, rebatch
from clinicflow.toolkit.sqldb import query_parameters


class ClickHouseConnection(BaseModel):
    """Where ClickHouse is. The URL may hold a password: it is a secret, and ``describe()`` drops it."""

    model_config = ConfigDict(extra="forbid")  # a mistyped key ("page_parm") is named, not ignored

    url: SecretStr = Field(description="http(s)://user:password@host:port, or chdb:///dir for the embedded engine.")
    database: str = Field("default", description="Database the tables live in.")

    def describe(self) -> str:
        parts = urlsplit(self.url.get_secret_value())
        if parts.scheme == "chdb":
            return f"chdb://{parts.netloc.rpartition('@')[2]}{parts.path} (database {self.database})"
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + f" (database {self.database})"

    def connect(self) -> Any:
        """A new clickhouse-connect client (hold it with ``connected``); chDB clients share the process's engine."""
        import clickhouse_connect

        url = self.url.get_secret_value()
        try:
            return clickhouse_connect.get_client(dsn=url, database=self.database)
        except Exception as exc:  # noqa: BLE001 - clickhouse-connect raises many types; named, without the DSN
            raise ToolkitError(f"cannot connect to ClickHouse at {self.describe()}: {type(exc).__name__}") from None


class ClickHouseExtractor:
    """Stream the rows of ``query`` in blocks of at most ``batch_size`` rows.

    Parameters are clickhouse-connect's client-side ``%(name)s`` form, filled
    from the pipeline parameters and the time scope ``start``/``end``.
    """

    def __init__(self, connection: ClickHouseConnection, query: str, *, batch_size: int = 100_000) -> None:
        self.connection, self.query, self.batch_size = connection, query, batch_size

    def extract(self, ctx: RunContext) -> Iterator[Batch]:
        with connected(self.connection) as client:
            try:
                stream = client.query_row_block_stream(
                    self.query,
                    parameters=query_parameters(ctx, self.query),
                    settings={"max_block_size": self.batch_size},
                )
            except Exception as exc:  # noqa: BLE001 - any client error becomes a ToolkitError naming the server
                raise ToolkitError(
                    f"ClickHouse query on {self.connection.describe()} failed: {one_line(exc, with_type=False)}"
                ) from None
            with stream:
                columns = tuple(stream.source.column_names)
                # chDB may answer in one block whatever max_block_size says: regroup to batch_size.
                yield from rebatch((Batch(columns, [tuple(r) for r in block]) for block in stream), self.batch_size)


class ClickHouseLoader:
    """Insert (or upsert) the stream into ``table`` in inserts of ``batch_size`` rows."""

    def __init__(
        self,
        connection: ClickHouseConnection,
        table: str,
        *,
        mode: Literal["insert", "upsert"] = "insert",
        upsert_strategy: Literal["replacing", "delete_insert"] = "replacing",
        key_columns: list[str] | None = None,
        version_column: str = "_version",
        batch_size: int = 100_000,
        create_sql: str | None = None,
    ) -> None:
        if mode == "upsert" and upsert_strategy == "delete_insert" and not key_columns:
            raise ToolkitError(f"clickhouse loader {table}: delete_insert upsert needs key_columns")
        if batch_size <= 0:
            raise ToolkitError(f"clickhouse loader {table}: batch_size must be positive")
        self.connection, self.table, self.mode, self.upsert_strategy = connection, table, mode, upsert_strategy
        self.key_columns, self.version_column = list(key_columns or []), version_column
        self.batch_size, self.create_sql = batch_size, create_sql

    def load(self, batches: Iterable[Batch], ctx: RunContext) -> int:
        target = quote_ident(self.connection.database, "clickhouse") + "." + quote_ident(self.table, "clickhouse")
        version = time.time_ns()  # one version per load: later loads win in a ReplacingMergeTree
        written = 0
        with connected(self.connection) as client:
            try:
                if self.create_sql:
                    client.command(self.create_sql)
                for batch in rebatch(batches, self.batch_size):
                    columns, rows = list(batch.columns), batch.rows
                    data: list[Any] = list(zip(*rows, strict=False))
                    if (
                        self.mode == "upsert"
                        and self.upsert_strategy == "replacing"
                        and self.version_column not in columns
                    ):
                        columns.append(self.version_column)
                        data.append([version] * len(rows))
                    if self.mode == "upsert" and self.upsert_strategy == "delete_insert":
                        self._delete_keys(client, target, batch)
                    client.insert(target, data, column_names=columns, column_oriented=True)
                    written += len(rows)
            except ToolkitError as exc:
                if not written:
                    raise
                # A step before the loader failed (a strict `types`): the rows already inserted stay.
                raise ToolkitError(f"{exc}{self._kept(written)}") from None
            except Exception as exc:  # noqa: BLE001 - any client error becomes a ToolkitError with the rows written
                hint = NO_TABLE_HINT if "UNKNOWN_TABLE" in str(exc) and not self.create_sql else ""
                raise ToolkitError(
                    f"ClickHouse load into {self.table} on {self.connection.describe()} failed after "
                    f"{written} rows: {one_line(exc, with_type=False)}{hint}{self._kept(written)}"
                ) from None
        return written

    def _kept(self, written: int) -> str:
        """What a failed load leaves: ClickHouse has no transaction, the batches inserted before stay."""
        if not written:
            return ""
        again = (
            "a rerun replaces them (upsert)"
            if self.mode == "upsert"
            else "a rerun inserts them again (mode insert: use upsert, or delete them first)"
        )
        return f"; the {written} rows inserted into {self.table} before the failure stay (no transaction): {again}"

    def _delete_keys(self, client: Any, target: str, batch: Batch) -> None:
        missing = [k for k in self.key_columns if k not in batch.columns]
        if missing:
            raise ToolkitError(f"clickhouse upsert into {self.table}: key columns {missing} not in the batch")
        positions = [batch.columns.index(k) for k in self.key_columns]
        if len(positions) == 1:
            keys: tuple[Any, ...] = tuple({row[positions[0]] for row in batch.rows})
            left = quote_ident(self.key_columns[0], "clickhouse")
        else:
            keys = tuple({tuple(row[p] for p in positions) for row in batch.rows})
            left = f"({quote_list(self.key_columns, 'clickhouse')})"
        client.command(f"DELETE FROM {target} WHERE {left} IN %(keys)s", parameters={"keys": keys})
