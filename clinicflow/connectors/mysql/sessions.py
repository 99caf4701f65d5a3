"""The one raw MySQL connection: values arrive as the server's bytes (no decoders), parameters are still encoded."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Literal, cast

import pymysql.converters

from clinicflow.connectors.connections import connected
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection

# The sql_mode of every clinicflow MySQL session (the block's init command, the C client's too): no strict
# mode, so '0000-00-00' dates and other legacy OpenDental values are read and written byte-exact.
MYSQL_SESSION_SQL_MODE = "NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"

# Encoders kept (pymysql needs them to send parameters), decoders dropped.
RAW_CONVERSIONS = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}

SessionZone = Literal["utc", "server"]


def raw_connection(server: MySQLServerLike, *, streaming: bool = False, zone: SessionZone = "utc") -> Connection:
    """An autocommit connection returning raw bytes; ``streaming`` gives an unbuffered cursor.

    The caller closes it; library code holds one with :func:`raw_connected` instead.

    ``zone="utc"`` keeps the server block's UTC session: the replica copy moves bytes, and the loader reads
    TIMESTAMP columns as UTC instants (a DST zone would fold an autumn hour); ``zone="server"`` reads them in
    the server's own zone.
    """
    conn = server.connect(streaming=streaming, conv=RAW_CONVERSIONS, autocommit=True)
    if zone == "server":
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION time_zone = @@global.time_zone")
        except BaseException:
            conn.close()  # never handed out, so nobody else would close it
            raise
    return conn


def raw_connected(
    server: MySQLServerLike, *, streaming: bool = False, zone: SessionZone = "utc"
) -> contextlib.AbstractContextManager[Connection]:
    """``with raw_connected(server) as conn``: a :func:`raw_connection` held by :func:`connected`, closed on exit."""
    return connected(functools.partial(raw_connection, server, streaming=streaming, zone=zone))


def catalog_text(value: Any) -> str | None:
    """A catalog value as text: bytes decoded as UTF-8, None kept."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return str(value)


def catalog_name(value: Any) -> str:
    """A catalog value that is never NULL (names, types, DDL, CONCAT_WS keys) as text."""
    return cast(str, catalog_text(value))


def catalog_int(value: Any) -> int | None:
    """A catalog number (bytes on a raw connection) as an int, None kept."""
    text = catalog_text(value)
    return None if text is None else int(text)
