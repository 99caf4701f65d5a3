"""Blocks and the one resolver: env mode, saved blocks, and no password anywhere."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from blocks.databases import MySQLServer, PostgresServer
from blocks.resolve import BlockResolutionError, resolve_block

SECRET = "fake-sentinel-not-a-credential-1"


def test_wrong_password_error_holds_no_password(mysql_server: MySQLServer, pg_server: PostgresServer, caplog) -> None:
    import psycopg2
    import pymysql

    caplog.set_level(logging.DEBUG)
    # A user that needs a password, so the server really checks it.
    admin = mysql_server.connect()
    with admin.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'cf_pw_test'@'%' IDENTIFIED BY 'right-one'")
        cur.execute("CREATE USER IF NOT EXISTS 'cf_pw_test'@'localhost' IDENTIFIED BY 'right-one'")
    admin.close()
    bad = mysql_server.model_copy(update={"username": "cf_pw_test", "password": SecretStr(SECRET)})
    with pytest.raises(pymysql.err.OperationalError) as info:
        bad.connect()
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    bad_pg = pg_server.model_copy(update={"password": SecretStr(SECRET), "port": 1})
    with pytest.raises(psycopg2.OperationalError) as pg_info:
        bad_pg.connect()
    assert SECRET not in str(pg_info.value)
    assert SECRET not in caplog.text


def test_blocks_mode_loads_saved_block(prefect_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "blocks")
    MySQLServer(host="saved.example", database="od", password=SECRET).save("cf-test-saved", overwrite=True)
    block = resolve_block("cf-test-saved", MySQLServer)
    assert block.host == "saved.example"
    assert block.password.get_secret_value() == SECRET
    with pytest.raises(BlockResolutionError, match="cf-test-missing") as info:
        resolve_block("cf-test-missing", MySQLServer)
    assert SECRET not in str(info.value)
