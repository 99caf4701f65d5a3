"""Shared pieces of the CDC tests: the source tables, a day of mutations, and the row-by-row comparison."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql.catalog import read_table
from clinicflow.connectors.mysql.sessions import catalog_text, raw_connection
from clinicflow.core.sql import quote_ident
from clinicflow.opendental.tables.config import TablesConfig, load_tables_config
from clinicflow.opendental.warehouse.load_plan import plan_load
from clinicflow.opendental.warehouse.verify import verify_table
from clinicflow_dev.admin import raw_rows
from tests.conftest import mysql_exec

SCHEMA = [
    "CREATE TABLE patient (PatNum bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, LName varchar(100) NOT NULL,"
    " Birthdate date NOT NULL DEFAULT '0000-00-00', Note text NULL, Photo blob NULL,"
    " Extra longtext NULL CHECK (json_valid(Extra)),"
    " DateTStamp timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp()) ENGINE=InnoDB",
    "CREATE TABLE procnote (PatNum bigint NOT NULL, NoteNum int NOT NULL, Body varchar(255) NULL,"
    " PRIMARY KEY (PatNum, NoteNum)) ENGINE=MyISAM",
    "CREATE TABLE notcopied (Id int NOT NULL PRIMARY KEY, V int) ENGINE=InnoDB",
]

TABLES_YML = """version: 1
tables:
  patient:
    primary_key: [PatNum]
    extraction_strategy: incremental
    incremental_columns: [DateTStamp]
    batch_size: 500
  procnote:
    primary_key: [PatNum, NoteNum]
    extraction_strategy: full_table
    batch_size: 500
"""


def write_tables_yml(directory: Path) -> tuple[Path, TablesConfig]:
    path = directory / "tables.yml"
    path.write_text(TABLES_YML)
    return path, load_tables_config(path)


def create_source(src: MySQLServer, rows: int = 40) -> None:
    mysql_exec(src, *SCHEMA)
    for i in range(rows):
        insert_patient(src, random.Random(i))
    mysql_exec(src, *(f"INSERT INTO procnote VALUES ({i % 7}, {i}, 'note {i}')" for i in range(rows)))


def insert_patient(src: MySQLServer, rng: random.Random, *, backdated: bool = False) -> None:
    stamp = "'2001-02-03 04:05:06'" if backdated else "DEFAULT"
    birth = "'0000-00-00'" if rng.random() < 0.3 else f"'1970-01-{rng.randint(1, 28):02d}'"
    mysql_exec(
        src,
        "INSERT INTO patient (LName, Birthdate, Note, Photo, Extra, DateTStamp) VALUES "
        f"(CONCAT('n', X'00', '{rng.randint(0, 999)}'), {birth}, "
        f"CONCAT('line1', CHAR(10), 'tab', CHAR(9), 'nul', X'00', 'end'), "
        f"X'00FF{rng.randint(0, 255):02X}00', "
        '\'{"a": "x\\\\u0000y", "n": 1.50}\', ' + stamp + ")",
    )


def mutate_day(src: MySQLServer, day: int, *, extra_column: bool = False) -> None:
    """Inserts, silent updates, deletes and backdated inserts on both tables, plus a table outside tables.yml."""
    rng = random.Random(1000 + day)
    for _ in range(8):
        insert_patient(src, rng)
    insert_patient(src, rng, backdated=True)
    ids = [r for (r,) in raw_rows(src, "SELECT PatNum FROM patient ORDER BY PatNum")]
    statements = [
        # Updates that keep DateTStamp (the nightly's watermark cannot see them).
        f"UPDATE patient SET LName = 'silent{day}', DateTStamp = DateTStamp WHERE PatNum IN ({ids[1]}, {ids[3]})",
        f"UPDATE patient SET Photo = NULL, Note = CONCAT('x', X'00'), DateTStamp = DateTStamp WHERE PatNum = {ids[5]}",
        f"DELETE FROM patient WHERE PatNum IN ({ids[0]}, {ids[-2]})",
        f"UPDATE procnote SET Body = CONCAT('edited', X'00', '{day}') WHERE NoteNum % 5 = {day % 5}",
        f"DELETE FROM procnote WHERE NoteNum = {day * 3}",
        f"INSERT INTO procnote VALUES ({day}, {1000 + day}, NULL)",
        f"UPDATE procnote SET PatNum = PatNum + 100 WHERE NoteNum = {day * 3 + 1}",  # a key that changes
        f"INSERT INTO notcopied VALUES ({day}, {day}) ON DUPLICATE KEY UPDATE V = V + 1",
    ]
    if extra_column:
        statements.append(f"UPDATE patient SET Middle = 'm{day}', DateTStamp = DateTStamp WHERE PatNum = {ids[2]}")
    mysql_exec(src, *statements)


def rows_of(server: MySQLServer, table: str, key: str) -> list[tuple[Any, ...]]:
    """Every row as the server's bytes, in key order."""
    return raw_rows(server, f"SELECT * FROM {quote_ident(table, 'mysql')} ORDER BY {key}")


def assert_equal(src: MySQLServer, replica: MySQLServer, pg: PostgresServer, config: TablesConfig) -> None:
    """Replica equal to the source row by row (bytes), and raw equal to the replica (the nightly's verification)."""
    for table, key in (("patient", "PatNum"), ("procnote", "PatNum, NoteNum")):
        source_rows, replica_rows = rows_of(src, table, key), rows_of(replica, table, key)
        assert replica_rows == source_rows, f"{table}: replica differs from the source"
        conn = raw_connection(replica, zone="server")
        pg_conn = pg.connect()
        try:
            plan = plan_load(read_table(conn, table), config.effective(table))
            result = verify_table(conn, pg_conn, plan)
            with pg_conn.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM raw.{quote_ident(table, 'postgres')}")
                raw_count = cur.fetchone()[0]
        finally:
            conn.close()
            pg_conn.close()
        assert result.status == "ok", f"{table}: raw differs: {result.summary()}"
        assert raw_count == len(source_rows), f"{table}: raw has {raw_count} rows, the source {len(source_rows)}"
    assert "notcopied" not in {catalog_text(r[0]) for r in raw_rows(replica, "SHOW TABLES")}
