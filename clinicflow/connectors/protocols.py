"""What the library needs of a configured server: small Protocols that the Prefect blocks satisfy.

The library never imports the blocks (``blocks/``) or Prefect: flows and tasks resolve a block by name
and hand it over; tests may hand over anything with the same shape.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from clinicflow.core.dbapi import Connection, PgConnection


@runtime_checkable
class MySQLServerLike(Protocol):
    """A MySQL/MariaDB server: where it is, and a pymysql connection with clinicflow's session settings."""

    host: str
    port: int
    database: str
    username: str
    unix_socket: str | None

    def connect(self, *, database: str | None = None, streaming: bool = False, **kwargs: Any) -> Connection: ...

    def describe(self) -> str: ...


@runtime_checkable
class PostgresServerLike(Protocol):
    """A PostgreSQL server: a psycopg2 connection (autocommit off) and a description without secrets."""

    database: str

    def connect(self, *, database: str | None = None, **kwargs: Any) -> PgConnection: ...

    def describe(self) -> str: ...
