"""Unit tests run without MariaDB or PostgreSQL: any attempt to reach either fails loudly.

The shared database servers stay up while unit tests run, so instead of stopping them
every way the code reaches a database is blocked here: TCP connects to the MySQL/PostgreSQL
ports, their Unix sockets, psycopg2.connect (libpq connects in C, below the socket module)
and the mariadb/mysql/psql command-line clients.
"""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

import psycopg2
import pytest

DATABASE_PORTS = {3306, 5432}
DATABASE_CLIENTS = {"mariadb", "mysql", "psql"}


class DatabaseUsedInUnitTest(AssertionError):
    """A unit test reached for a database; it belongs under tests/integration."""


def _is_database_address(address: Any) -> bool:
    if isinstance(address, (str, bytes)):
        path = os.fsdecode(address)
        return "mysql" in path or ".s.PGSQL" in path
    if isinstance(address, tuple) and len(address) >= 2:
        return address[1] in DATABASE_PORTS
    return False


@pytest.fixture(autouse=True)
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_popen_init = subprocess.Popen.__init__

    def refuse(what: str) -> DatabaseUsedInUnitTest:
        return DatabaseUsedInUnitTest(f"unit test reached a database ({what}); move it to tests/integration")

    def connect(self: socket.socket, address: Any) -> None:
        if _is_database_address(address):
            raise refuse(f"socket connect to {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if _is_database_address(address):
            raise refuse(f"socket connect to {address!r}")
        return real_connect_ex(self, address)

    def pg_connect(*_args: Any, **_kwargs: Any) -> None:
        raise refuse("psycopg2.connect")

    def popen_init(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        program = os.path.basename(os.fsdecode(argv[0]).split()[0]) if argv else ""
        if program in DATABASE_CLIENTS:
            raise refuse(f"the {program} client")
        real_popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(psycopg2, "connect", pg_connect)
    monkeypatch.setattr(subprocess.Popen, "__init__", popen_init)
