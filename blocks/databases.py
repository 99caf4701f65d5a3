"""Credential blocks for the databases clinicflow talks to.

These are thin custom blocks rather than prefect-sqlalchemy's
``SqlAlchemyConnector``: the fast paths need driver-level features that an
SQLAlchemy engine hides (pymysql's ``LOAD DATA LOCAL INFILE`` and unbuffered
cursors, psycopg2's ``copy_expert``), and a raw DBAPI connection per task is
what those paths want. Passwords are ``SecretStr``: they never appear in a
repr, a log line, an artifact or an exception message. ``describe()`` gives
the only printable form, without the password.
"""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from clinicflow.connectors.mysql.sessions import MYSQL_SESSION_SQL_MODE
from clinicflow.core import secret_env
from clinicflow.core.dbapi import Connection, PgConnection


def _env_name(block_name: str, field: str) -> str:
    from blocks.resolve import env_prefix  # blocks.resolve imports this module

    return env_prefix(block_name) + field.upper()


class _ServerBlock(Block):
    """Fields and env-var loading shared by both database blocks."""

    host: str = Field(default="127.0.0.1", description="Server host name or address.")
    port: int = Field(description="Server port.")
    username: str = Field(default="root", description="User name.")
    password: SecretStr = Field(default=SecretStr(""), description="Password (stored encrypted by Prefect).")
    database: str = Field(description="Database name.")

    _scheme: ClassVar[str] = ""

    def describe(self) -> str:
        """A printable address: never contains the password."""
        return f"{self._scheme}://{self.username}@{self.host}:{self.port}/{self.database}"

    @classmethod
    def from_env(cls, block_name: str, defaults: dict[str, Any] | None = None) -> _ServerBlock:
        """Build the block from ``CLINICFLOW_<BLOCK_NAME>_{HOST,PORT,USER,PASSWORD,DATABASE}``.

        Used when no Prefect API is reachable (the CronJob fallback) and for
        the local demo. Unset variables take ``defaults``, then the field defaults.
        """
        values: dict[str, Any] = dict(defaults or {})
        mapping = {"host": "HOST", "port": "PORT", "username": "USER", "password": "PASSWORD", "database": "DATABASE"}
        for field, suffix in mapping.items():
            raw = secret_env.getenv(_env_name(block_name, suffix))
            if raw is not None:
                values[field] = raw
        if "port" in values:
            try:
                values["port"] = int(values["port"])
            except ValueError:
                raise ValueError(f"{_env_name(block_name, 'PORT')} must be an integer port number") from None
        return cls(**values)


def _shared_tls_connection_class() -> type:
    """pymysql's Connection, sharing one default TLS context between connections.

    pymysql 1.2 negotiates TLS in PREFERRED mode and builds a fresh default
    context (loading the system CA store) for every connection: most of the
    cost of a connection, paid several times per table per night.
    Contexts are meant to be shared; explicit TLS options still get their own.
    """
    global _TLS_CONNECTION_CLASS
    if _TLS_CONNECTION_CLASS is None:
        import threading

        import pymysql.connections

        lock = threading.Lock()

        # pymysql ships no type information (its Connection is Any to mypy).
        class SharedTLSConnection(pymysql.connections.Connection):  # type: ignore[misc]
            _default_ctx: Any = None

            def _create_ssl_ctx(self, sslp: Any) -> Any:
                if sslp:
                    return super()._create_ssl_ctx(sslp)
                with lock:
                    if SharedTLSConnection._default_ctx is None:
                        SharedTLSConnection._default_ctx = super()._create_ssl_ctx(sslp)
                return SharedTLSConnection._default_ctx

        _TLS_CONNECTION_CLASS = SharedTLSConnection
    return _TLS_CONNECTION_CLASS


_TLS_CONNECTION_CLASS: type | None = None


class MySQLServer(_ServerBlock):
    """A MySQL/MariaDB database: the OpenDental source or the replication target."""

    _block_type_name = "clinicflow MySQL Server"
    _block_type_slug = "clinicflow-mysql-server"
    _description = "Connection settings for a MySQL or MariaDB database used by clinicflow."
    _scheme: ClassVar[str] = "mysql"

    port: int = Field(default=3306, description="Server port.")
    database: str = Field(default="opendental", description="Database (schema) name.")
    unix_socket: str | None = Field(
        default=None, description="Optional Unix socket path; overrides host/port when set."
    )

    def connect(self, *, database: str | None = None, streaming: bool = False, **kwargs: Any) -> Connection:
        """Open a pymysql connection with clinicflow's session settings.

        ``streaming=True`` gives an unbuffered cursor class, so large results
        are read row by row with memory bounded by what the caller keeps.
        """
        import pymysql
        import pymysql.cursors

        params: dict[str, Any] = {
            "user": self.username,
            "password": self.password.get_secret_value(),
            "database": database if database is not None else self.database,
            "charset": "utf8mb4",
            "autocommit": False,
            "local_infile": True,
            "connect_timeout": 20,
            "init_command": f"SET SESSION sql_mode='{MYSQL_SESSION_SQL_MODE}', SESSION time_zone='+00:00'",
            "cursorclass": pymysql.cursors.SSCursor if streaming else pymysql.cursors.Cursor,
        }
        if self.unix_socket:
            params["unix_socket"] = self.unix_socket
        else:
            params["host"] = self.host
            params["port"] = self.port
        params.update(kwargs)
        connection: Connection = _shared_tls_connection_class()(**params)  # pymysql ships no types
        return connection


class PostgresServer(_ServerBlock):
    """A PostgreSQL database: the analytics target, or a reports source."""

    _block_type_name = "clinicflow Postgres Server"
    _block_type_slug = "clinicflow-postgres-server"
    _description = "Connection settings for a PostgreSQL database used by clinicflow."
    _scheme: ClassVar[str] = "postgresql"

    port: int = Field(default=5432, description="Server port.")
    username: str = Field(default="postgres", description="User name.")
    database: str = Field(default="analytics", description="Database name.")
    sslmode: str = Field(default="prefer", description="libpq sslmode.")

    def connect(self, *, database: str | None = None, **kwargs: Any) -> PgConnection:
        """Open a psycopg2 connection (autocommit off)."""
        import psycopg2

        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.username,
            "dbname": database if database is not None else self.database,
            "sslmode": self.sslmode,
            "connect_timeout": 20,
            "application_name": "clinicflow",
        }
        password = self.password.get_secret_value()
        if password:
            params["password"] = password
        params.update(kwargs)
        connection: PgConnection = psycopg2.connect(**params)  # psycopg2 ships no types
        return connection
