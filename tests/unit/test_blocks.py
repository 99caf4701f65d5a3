"""Blocks and the one resolver: env mode, saved blocks, and no password anywhere."""
from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from blocks.databases import MySQLServer, PostgresServer
from blocks.resolve import BlockResolutionError, resolve_block

SECRET = "fake-sentinel-not-a-credential-1"


def test_env_mode_builds_block_from_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_HOST", "db.example")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PORT", "3307")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PASSWORD", SECRET)
    block = resolve_block("opendental-source", MySQLServer)
    assert (block.host, block.port, block.database) == ("db.example", 3307, "opendental")
    assert block.password.get_secret_value() == SECRET
    assert SECRET not in repr(block) and SECRET not in str(block) and SECRET not in block.describe()


def test_env_mode_defaults_per_block_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    for var in ("HOST", "PORT", "USER", "PASSWORD", "DATABASE"):
        monkeypatch.delenv(f"CLINICFLOW_OPENDENTAL_REPLICATION_{var}", raising=False)
        monkeypatch.delenv(f"CLINICFLOW_ANALYTICS_POSTGRES_{var}", raising=False)
    assert resolve_block("opendental-replication", MySQLServer).database == "opendental_replication"
    assert resolve_block("analytics-postgres", PostgresServer).database == "analytics"


def test_bad_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_PORT", "five")
    with pytest.raises(BlockResolutionError, match="CLINICFLOW_ANALYTICS_POSTGRES_PORT"):
        resolve_block("analytics-postgres", PostgresServer)


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
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
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
