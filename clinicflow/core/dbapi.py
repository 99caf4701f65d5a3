"""What the library uses of a DB-API 2.0 connection, as typed Protocols.

pymysql and psycopg2 ship no type information, so a connection they return is ``Any`` to mypy. The
library's functions take these Protocols instead: a call of a method the drivers do not have, or with
the wrong arguments, is a type error, and the signature says what kind of connection a function needs.

- :class:`Connection` / :class:`Cursor`: what both drivers have (MySQL/MariaDB through pymysql,
  PostgreSQL through psycopg2).
- :class:`PgConnection` / :class:`PgCursor`: psycopg2's additions the library uses (``COPY`` through
  ``copy_expert``, named-cursor ``itersize``, ``autocommit``, ``set_session``, ``closed``).

Rows stay ``Any``: a tuple, or a dict with a dict cursor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO, Any, Protocol, Self

__all__ = ["Connection", "Cursor", "PgConnection", "PgCursor", "Readable", "column_names"]


class Cursor(Protocol):
    """A DB-API cursor; ``with conn.cursor() as cur`` closes it."""

    @property
    def description(self) -> Sequence[Sequence[Any]] | None:
        """One 7-item sequence per result column (its name first); None before a query with a result."""
        ...

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: str, args: Any = ..., /) -> Any: ...

    def executemany(self, query: str, args: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchmany(self, size: int = ...) -> Sequence[Any]: ...

    def fetchall(self) -> Sequence[Any]: ...

    def close(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> Any: ...


class Connection(Protocol):
    """A DB-API connection (pymysql or psycopg2)."""

    def cursor(self, *args: Any, **kwargs: Any) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class Readable(Protocol):
    """What ``COPY ... FROM STDIN`` reads from (a file, or a stream object with ``read``)."""

    def read(self, size: int = ..., /) -> bytes | str: ...


class PgCursor(Cursor, Protocol):
    """A psycopg2 cursor."""

    itersize: int

    @property
    def connection(self) -> PgConnection: ...

    def copy_expert(self, sql: str, file: Readable | IO[Any], size: int = ...) -> None: ...


class PgConnection(Connection, Protocol):
    """A psycopg2 connection."""

    autocommit: bool

    @property
    def closed(self) -> int:
        """Non-zero once the connection is closed or broken."""
        ...

    def cursor(self, *args: Any, **kwargs: Any) -> PgCursor: ...

    def set_session(
        self,
        *,
        isolation_level: Any = ...,
        readonly: bool | None = ...,
        deferrable: bool | None = ...,
        autocommit: bool | None = ...,
    ) -> None: ...


def column_names(cursor: Cursor) -> list[str]:
    """The result columns of the cursor's last query; an error if that query returned no result set."""
    description = cursor.description
    if description is None:
        raise ValueError("the last statement returned no result set (no column names)")
    return [column[0] for column in description]
