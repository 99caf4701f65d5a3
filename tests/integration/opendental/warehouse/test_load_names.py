"""Names and keys PostgreSQL treats differently from MariaDB: quoted JSON column names, 63-byte
identifier truncation, and primary keys that differ only by NUL bytes (removed on the way)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql import catalog, sessions
from clinicflow.core import sql
from clinicflow.opendental.tables.config import TableConfig
from clinicflow.opendental.warehouse import load_errors, load_steps
from tests.integration.opendental.warehouse.conftest import mysql_exec, pg_query


@pytest.fixture
def dbs(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> tuple[MySQLServer, PostgresServer]:
    replica, pg = make_mysql_db("names"), make_pg_db("names")
    load_steps.setup_target(pg)
    return replica, pg


def test_json_columns_whose_names_need_quoting_are_still_json(dbs: tuple[MySQLServer, PostgresServer]) -> None:
    replica, pg = dbs
    mysql_exec(
        replica,
        "CREATE TABLE docs (Id int NOT NULL PRIMARY KEY, `my doc` json, `a``b` json, plain json, notes longtext)",
        """INSERT INTO docs VALUES (1, '{"x": 1}', '[1, 2]', '{"y": "z"}', 'not json')""",
    )
    conn = sessions.raw_connection(replica)
    try:
        source = catalog.read_table(conn, "docs")
    finally:
        conn.close()
    assert {c.name: c.is_json for c in source.columns} == {
        "Id": False,
        "my doc": True,
        "a`b": True,
        "plain": True,
        "notes": False,
    }
    assert load_steps.load_table_once(replica, pg, "docs", TableConfig(primary_key=["Id"])).status == "ok"
    types = dict(
        pg_query(
            pg,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'raw' AND table_name = 'docs'",
        )
    )
    assert types == {"Id": "integer", "my doc": "jsonb", "a`b": "jsonb", "plain": "jsonb", "notes": "text"}
    assert pg_query(pg, 'SELECT "my doc"->>\'x\', "a`b"->>1 FROM raw.docs') == [("1", "2")]


def test_columns_equal_after_63_bytes_fail_the_table_naming_both(dbs: tuple[MySQLServer, PostgresServer]) -> None:
    replica, pg = dbs
    first, second = "c" * 62 + "_a", "c" * 62 + "_b"  # 64 characters each, equal in their first 63
    mysql_exec(
        replica,
        f"CREATE TABLE longcols (Id int NOT NULL PRIMARY KEY, `{first}` int, `{second}` int)",
        "INSERT INTO longcols VALUES (1, 2, 3)",
    )
    with pytest.raises(load_errors.LoadError) as info:
        load_steps.load_table_once(replica, pg, "longcols", TableConfig(primary_key=["Id"]))
    assert first in str(info.value)
    assert second in str(info.value)
    assert "63 bytes" in str(info.value)
    assert sql.pg_truncation_collisions(["é" * 32 + "a", "é" * 32 + "b", "short"]) == [("é" * 32 + "a", "é" * 32 + "b")]


def test_keys_that_differ_only_by_nul_bytes_say_so(dbs: tuple[MySQLServer, PostgresServer]) -> None:
    replica, pg = dbs
    mysql_exec(
        replica,
        "CREATE TABLE nulkey (K varbinary(10) NOT NULL, V int, PRIMARY KEY (K)) ",
        "CREATE TABLE nultext (K varchar(10) CHARACTER SET utf8mb3 COLLATE utf8mb3_bin NOT NULL, V int, "
        "PRIMARY KEY (K))",
        "INSERT INTO nultext VALUES ('ab', 1), (CONCAT('a', CHAR(0), 'b'), 2)",
    )
    with pytest.raises(load_errors.LoadError) as info:
        load_steps.load_table_once(replica, pg, "nultext", TableConfig(primary_key=["K"]))
    assert "differ only by NUL bytes" in str(info.value)
    assert "column(s) K" in str(info.value)
    assert "not unique in PostgreSQL" in str(info.value)
    # A binary key keeps its NUL bytes: no collision.
    mysql_exec(replica, "INSERT INTO nulkey VALUES ('ab', 1), (CONCAT('a', CHAR(0), 'b'), 2)")
    assert load_steps.load_table_once(replica, pg, "nulkey", TableConfig(primary_key=["K"])).status == "ok"


def test_an_incremental_batch_with_keys_equal_after_nul_removal_says_so(
    dbs: tuple[MySQLServer, PostgresServer],
) -> None:
    replica, pg = dbs
    mysql_exec(
        replica,
        "CREATE TABLE nulinc (K varchar(10) CHARACTER SET utf8mb3 COLLATE utf8mb3_bin NOT NULL, "
        "V int, PRIMARY KEY (K))",
        "INSERT INTO nulinc VALUES ('m', 1)",
    )
    config = TableConfig(primary_key=["K"], extraction_strategy="incremental", incremental_columns=["K"])
    assert load_steps.load_table_once(replica, pg, "nulinc", config).status == "ok"
    mysql_exec(replica, "INSERT INTO nulinc VALUES ('xy', 2), (CONCAT('x', CHAR(0), 'y'), 3)")
    with pytest.raises(load_errors.LoadError) as info:
        load_steps.load_table_once(replica, pg, "nulinc", config)
    assert "same primary key in PostgreSQL" in str(info.value)
    assert "differ only by NUL bytes" in str(info.value)
    assert pg_query(pg, "SELECT count(*) FROM raw.nulinc") == [(1,)]  # the batch was not half-merged
