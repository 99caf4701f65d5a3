"""Refuse dangerous target configurations before anything is written.

A replica that is the source (same server and database) would have its
tables dropped and re-created by a full copy, and the state table written
into the clinic's database; an analytics block pointing at the source's
server would be written to as well. Addresses alone do not tell
(``127.0.0.1`` vs ``localhost`` vs a Unix socket vs a DNS name), so the
servers are asked who they are: ``@@server_uuid`` (MySQL), else
``@@hostname`` + ``@@port`` + ``@@datadir`` (MariaDB has no server UUID).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.opendental.tables.config import ConfigError

_LOOPBACK_NAMES = frozenset({"", "localhost", "localhost.localdomain", "127.0.0.1", "::1", "ip6-localhost"})


class DangerousConfigError(ConfigError):
    """The configured blocks would make clinicflow write into the source; nothing was touched."""


@dataclass(frozen=True)
class MySQLIdentity:
    """Who a MySQL/MariaDB server is, as it says itself."""

    server_uuid: str | None
    hostname: str
    port: int
    datadir: str
    lower_case_table_names: int

    def same_server(self, other: MySQLIdentity) -> bool:
        if self.server_uuid and other.server_uuid:
            return self.server_uuid == other.server_uuid
        return (self.hostname, self.port, self.datadir) == (other.hostname, other.port, other.datadir)

    def same_database(self, first: str, second: str) -> bool:
        # lower_case_table_names 0: database names are case-sensitive on this server.
        if self.lower_case_table_names == 0:
            return first == second
        return first.lower() == second.lower()


def mysql_identity(server: Any) -> MySQLIdentity:
    """Ask a MySQL/MariaDB server who it is (no database selected: the replica's may not exist yet)."""
    with connected(server, database="") as conn, conn.cursor() as cur:
        cur.execute(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
            "('server_uuid', 'hostname', 'port', 'datadir', 'lower_case_table_names')"
        )
        values = {_text(name): _text(value) for name, value in cur.fetchall()}
    return MySQLIdentity(
        values.get("server_uuid") or None,
        values.get("hostname", ""),
        int(values.get("port") or 0),
        values.get("datadir", ""),
        int(values.get("lower_case_table_names") or 0),
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _addresses(host: str) -> frozenset[str]:
    """The addresses a host name stands for (loopback names collapse to one), for comparing blocks."""
    name = (host or "").strip().lower()
    if name in _LOOPBACK_NAMES or name.startswith("127."):
        return frozenset({"loopback"})
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
    except OSError:
        return frozenset({name})
    return frozenset("loopback" if a == "::1" or a.startswith("127.") else a for a in found)


def same_address(first: Any, second: Any) -> bool:
    """Whether two blocks name the same host (by address) and port, without connecting."""
    if getattr(first, "unix_socket", None) or getattr(second, "unix_socket", None):
        return False
    return first.port == second.port and bool(_addresses(first.host) & _addresses(second.host))


def check_replica_is_not_source(source: Any, replica: Any) -> None:
    """Raise DangerousConfigError when the replica block names the source's server and database."""
    message = (
        f"refusing to run: the replication target {replica.describe()} is the source "
        f"{source.describe()} (same server and database); a copy would drop and re-create the "
        "clinic's own tables. Point the opendental-replication block at another database"
    )
    if same_address(source, replica) and source.database == replica.database:
        raise DangerousConfigError(message)
    source_id, replica_id = mysql_identity(source), mysql_identity(replica)
    if source_id.same_server(replica_id) and source_id.same_database(source.database, replica.database):
        raise DangerousConfigError(message)


def check_analytics_is_not_source(source: Any, analytics: Any) -> None:
    """Raise DangerousConfigError when the analytics (PostgreSQL) block names the source's host and port."""
    if same_address(source, analytics):
        raise DangerousConfigError(
            f"refusing to run: the analytics database {analytics.describe()} points at the source's server "
            f"{source.describe()}; point the analytics-postgres block at the PostgreSQL server"
        )


def check_targets(source: Any, replica: Any, analytics: Any | None = None) -> None:
    """Every check of this module, before a run touches anything."""
    check_replica_is_not_source(source, replica)
    if analytics is not None:
        check_analytics_is_not_source(source, analytics)
