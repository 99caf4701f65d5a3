"""The one retry policy: transient errors retry with backoff, the rest fail at once."""

from __future__ import annotations

import psycopg2
import pymysql
import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.core.retry import is_transient


def test_real_lost_connection_is_transient(mysql_server: MySQLServer) -> None:
    conn = mysql_server.connect()
    victim = conn.thread_id()
    killer = mysql_server.connect()
    with killer.cursor() as cur:
        cur.execute(f"KILL {int(victim)}")
    killer.close()
    with pytest.raises(pymysql.err.OperationalError) as info, conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert is_transient(info.value)


def test_real_sql_error_is_not_transient(mysql_server: MySQLServer) -> None:
    conn = mysql_server.connect()
    try:
        with pytest.raises(pymysql.err.ProgrammingError) as info, conn.cursor() as cur:
            cur.execute("SELECT * FROM no_such_db.no_such_table")
        assert not is_transient(info.value)
    finally:
        conn.close()


def test_real_lock_wait_timeout_is_transient(make_mysql_db) -> None:
    db = make_mysql_db("retry")
    a, b = db.connect(), db.connect()
    try:
        with a.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
            cur.execute("INSERT INTO t VALUES (1)")
            a.commit()
            cur.execute("SELECT * FROM t WHERE id=1 FOR UPDATE")
        with b.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout=1")
            with pytest.raises(pymysql.err.OperationalError) as info:
                cur.execute("UPDATE t SET id=2 WHERE id=1")
        assert info.value.args[0] == 1205
        assert is_transient(info.value)
    finally:
        a.close()
        b.close()


def test_postgres_errors_classified(pg_server: PostgresServer) -> None:
    conn = pg_server.connect()
    try:
        with pytest.raises(psycopg2.Error) as info, conn.cursor() as cur:
            cur.execute("SELECT 1/0")
        assert not is_transient(info.value)
    finally:
        conn.close()
    with pytest.raises(psycopg2.OperationalError) as refused:
        pg_server.model_copy(update={"port": 1}).connect()
    assert is_transient(refused.value)
