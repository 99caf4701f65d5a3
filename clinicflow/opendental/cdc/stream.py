"""Reading the source's binlog (python-mysql-replication): changed keys per table, commit points, DDL."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.mysql.sessions import catalog_text
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.opendental.cdc.checks import BinlogPosition


@dataclass(frozen=True)
class RowChange:
    """Keys a row event touched (an update's old and new key both: a changed key deletes the old row)."""

    table: str
    keys: list[tuple[Any, ...]]
    rows: int
    timestamp: int


@dataclass(frozen=True)
class Commit:
    """The end of a transaction: resuming at ``position`` loses nothing before it."""

    position: BinlogPosition
    timestamp: int


@dataclass(frozen=True)
class Ddl:
    """A statement that changes a watched table's shape or content without row events (ALTER, TRUNCATE, DROP...)."""

    table: str
    statement: str
    position: BinlogPosition  # after the statement
    timestamp: int


Event = RowChange | Commit | Ddl

_DDL = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(ALTER|TRUNCATE|DROP|RENAME|CREATE|OPTIMIZE|REPAIR)\b", re.I | re.S)
_NAME = re.compile(r"(?:`((?:[^`]|``)+)`|([A-Za-z0-9_$]+))(?:\s*\.\s*(?:`((?:[^`]|``)+)`|([A-Za-z0-9_$]+)))?")


def ddl_tables(statement: str, default_schema: str, schema: str, watched: set[str]) -> list[str]:
    """Watched tables of ``schema`` a DDL statement names (``db.t`` or ``t`` with ``default_schema`` current)."""
    if not _DDL.match(statement):
        return []
    found = []
    lowered = {t.lower(): t for t in watched}
    for m in _NAME.finditer(statement):
        first, second = (m.group(1) or m.group(2)), (m.group(3) or m.group(4))
        db, name = (first, second) if second else (default_schema, first)
        if db.lower() == schema.lower() and name.lower() in lowered and lowered[name.lower()] not in found:
            found.append(lowered[name.lower()])
    return found


def _connector(server: MySQLServerLike) -> Any:
    """The reader's connections come from the block (credentials never pass through here)."""

    def connect(**settings: Any) -> Any:
        extra = {k: settings[k] for k in ("cursorclass", "autocommit") if k in settings}
        return server.connect(database=settings.get("db") or "", **extra)

    return connect


def read_events(
    src: MySQLServerLike, *, server_id: int, start: BinlogPosition, key_ordinals: dict[str, list[int]]
) -> Generator[Event, None, None]:
    """Events from ``start`` to the end of the binlog as it is now (a non-blocking dump), then stop.

    ``key_ordinals``: watched table → 0-based positions of its primary key columns in the binlog row image.
    The dump is by file and position on MariaDB too (the client's MariaDB mode would start at the first file).
    The caller closes the generator before a long pause (applying a batch), so the server never times out a
    half-read dump and a reconnect never resumes in the middle of a transaction.
    """
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.event import QueryEvent, RotateEvent, XidEvent
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    open_reader = functools.partial(
        BinLogStreamReader,
        connection_settings={"host": src.host, "port": src.port, "user": src.username, "passwd": ""},
        server_id=server_id,
        log_file=start.file,
        log_pos=start.pos,
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, QueryEvent, RotateEvent],
        only_schemas=None,
        pymysql_wrapper=_connector(src),
        is_mariadb=False,
        enable_logging=False,
        ignore_decode_errors=True,
    )  # only key values are used; blobs need no decoding
    # Its advice on binlog_row_metadata does not apply: rows are named by key position, not column names.
    logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)
    schema = src.database
    with connected(open_reader) as reader:
        for event in reader:
            timestamp = int(event.timestamp)
            if isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
                if _text(event.schema) != schema or _text(event.table) not in key_ordinals:
                    continue
                table = _text(event.table)
                ordinals = key_ordinals[table]
                keys = []
                for row in event.rows:
                    images = (
                        [row["before_values"], row["after_values"]]
                        if isinstance(event, UpdateRowsEvent)
                        else [row["values"]]
                    )
                    for image in images:
                        values = list(image.values())
                        keys.append(tuple(values[i] for i in ordinals))
                yield RowChange(table, keys, len(event.rows), timestamp)
            elif isinstance(event, XidEvent):
                yield Commit(BinlogPosition(reader.log_file, reader.log_pos), timestamp)
            elif isinstance(event, QueryEvent):
                query = _text(event.query).strip()
                position = BinlogPosition(reader.log_file, reader.log_pos)
                if query.upper() in ("BEGIN", "XA START", "XA END"):
                    continue
                if query.upper() == "COMMIT":
                    yield Commit(position, timestamp)
                    continue
                for table in ddl_tables(query, _text(event.schema), schema, set(key_ordinals)):
                    yield Ddl(table, query, position, timestamp)
                yield Commit(position, timestamp)  # a DDL statement commits by itself


def _text(value: Any) -> str:
    return catalog_text(value) or ""
