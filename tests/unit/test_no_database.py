"""The unit-test guard itself: reaching MariaDB or PostgreSQL from a unit test fails."""

from __future__ import annotations

import socket
import subprocess

import psycopg2
import pymysql
import pytest

from tests.unit.conftest import DatabaseUsedInUnitTest


@pytest.mark.parametrize("port", [3306, 5432])
def test_tcp_connect_to_a_database_port_fails(port: int) -> None:
    with socket.socket() as sock, pytest.raises(DatabaseUsedInUnitTest, match=str(port)):
        sock.connect(("127.0.0.1", port))


def test_pymysql_fails() -> None:
    with pytest.raises(DatabaseUsedInUnitTest):
        pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")


def test_psycopg2_fails() -> None:
    with pytest.raises(DatabaseUsedInUnitTest, match="psycopg2"):
        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")


def test_mariadb_client_fails() -> None:
    with pytest.raises(DatabaseUsedInUnitTest, match="mariadb"):
        subprocess.run(["mariadb", "--version"], check=False)


def test_other_subprocesses_run() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0
