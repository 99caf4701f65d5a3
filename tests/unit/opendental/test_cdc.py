"""CDC's pure parts: which DDL names a watched table, position order, retention, key predicates."""

from __future__ import annotations

import pytest

from clinicflow.opendental.cdc.apply import mysql_key_predicate
from clinicflow.opendental.cdc.checks import BinlogPosition, retention_seconds
from clinicflow.opendental.cdc.stream import ddl_tables

WATCHED = {"patient", "procedurelog"}


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("ALTER TABLE patient ADD COLUMN x int", ["patient"]),
        ("alter table `od`.`Patient` modify LName varchar(200)", ["patient"]),
        ("/* a comment */ TRUNCATE TABLE procedurelog", ["procedurelog"]),
        ("DROP TABLE IF EXISTS `patient`, `other`", ["patient"]),
        ("RENAME TABLE patient TO patient_old", ["patient"]),
        ("ALTER TABLE other.patient ADD COLUMN x int", []),  # another database
        ("ALTER TABLE notwatched ADD COLUMN patient int", ["patient"]),  # over-matching only re-copies
        ("INSERT INTO patient VALUES (1)", []),
        ("BEGIN", []),
    ],
)
def test_ddl_names_watched_tables_of_the_source_database(statement: str, expected: list[str]) -> None:
    assert ddl_tables(statement, "od", "od", WATCHED) == expected


def test_ddl_with_another_current_database_names_no_table_of_ours() -> None:
    assert ddl_tables("ALTER TABLE patient ADD COLUMN x int", "elsewhere", "od", WATCHED) == []


def test_positions_order_across_files() -> None:
    assert BinlogPosition("mysql-bin.000009", 900).key() < BinlogPosition("mysql-bin.000010", 4).key()
    assert min([BinlogPosition("b.000002", 5), BinlogPosition("b.000001", 99)], key=BinlogPosition.key).pos == 99


@pytest.mark.parametrize(
    ("values", "seconds"),
    [
        ({"binlog_expire_logs_seconds": "86400", "expire_logs_days": "0"}, 86400),
        ({"binlog_expire_logs_seconds": "0", "expire_logs_days": "3"}, 3 * 86400),
        ({"binlog_expire_logs_seconds": "0", "expire_logs_days": "0"}, None),  # never purged
        ({"expire_logs_days": "0.5"}, 43200),
    ],
)
def test_retention(values: dict[str, str], seconds: int | None) -> None:
    assert retention_seconds(values) == seconds  # type: ignore[arg-type]


def test_key_predicates() -> None:
    assert mysql_key_predicate(["PatNum"], [(1,), (2,)]) == ("`PatNum` IN (%s, %s)", [1, 2])
    sql, params = mysql_key_predicate(["a", "b"], [(1, "x"), (2, "y")])
    assert sql == "(`a`, `b`) IN ((%s, %s), (%s, %s))"
    assert params == [1, "x", 2, "y"]
