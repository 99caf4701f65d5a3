"""connected() / transaction() against a real PostgreSQL and MariaDB: closed always, committed or rolled back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.connections import connected, transaction


def _count(server: PostgresServer) -> int:
    with connected(server) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        return int(cur.fetchone()[0])


def test_transaction_commits_a_normal_end_and_rolls_back_an_error(make_pg_db: Callable[[str], PostgresServer]) -> None:
    server = make_pg_db("connections")
    with transaction(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int)")
        cur.execute("INSERT INTO t VALUES (1)")
    assert conn.closed
    assert _count(server) == 1
    opened = []

    def insert_then_fail() -> None:
        with transaction(server) as conn, conn.cursor() as cur:
            opened.append(conn)
            cur.execute("INSERT INTO t VALUES (2)")
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        insert_then_fail()
    assert opened[0].closed
    assert _count(server) == 1


def test_connected_closes_without_committing_and_takes_a_connect_callable(
    make_pg_db: Callable[[str], PostgresServer],
) -> None:
    server = make_pg_db("connections")
    with transaction(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int)")
    with connected(server.connect) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1)")  # never committed: closing drops it
    assert conn.closed
    assert _count(server) == 0
    with pytest.raises(RuntimeError, match="boom"), connected(server) as conn:
        raise RuntimeError("boom")
    assert conn.closed


def test_connected_passes_connect_arguments_to_a_mysql_server(mysql_server: MySQLServer) -> None:
    with connected(mysql_server, database="mysql") as conn, conn.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone()[0] == "mysql"
    assert not conn.open


def test_raw_connected_gives_a_raw_session_in_the_asked_zone_and_closes_it(mysql_server: MySQLServer) -> None:
    from clinicflow.connectors.mysql.sessions import raw_connected

    with raw_connected(mysql_server, zone="server") as conn, conn.cursor() as cur:
        cur.execute("SELECT @@session.time_zone = @@global.time_zone, @@autocommit")
        assert tuple(cur.fetchone()) == ("1", "1")  # no decoders: numbers arrive as the server's text
    with raw_connected(mysql_server) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@session.time_zone")
        assert cur.fetchone()[0] == "+00:00"  # the block's UTC session kept
    assert not conn.open
    with pytest.raises(RuntimeError, match="boom"), raw_connected(mysql_server, streaming=True) as conn:
        raise RuntimeError("boom")
    assert not conn.open
