"""A page of changed rows with large values reads the matching keys first, then only those rows, by key."""

from __future__ import annotations

from collections.abc import Callable

from blocks.databases import MySQLServer
from clinicflow.opendental.streamed_values import keys_first_from
from tests.conftest import mysql_exec, mysql_query


def test_keys_first_reads_the_changed_rows_by_their_key(make_mysql_db: Callable[[str], MySQLServer]) -> None:
    server = make_mysql_db("keysfirst")
    mysql_exec(
        server,
        "CREATE TABLE `doc` (`Pat` int NOT NULL, `Kind` varchar(8) NOT NULL, `Stamp` int NOT NULL, "
        "`Body` longblob, PRIMARY KEY (`Pat`, `Kind`)) ENGINE=InnoDB",
        "INSERT INTO `doc` SELECT seq DIV 2, IF(seq % 2, 'a', 'b'), seq, REPEAT(X'00FF', 5000) FROM seq_0_to_1999",
        "ANALYZE TABLE `doc`",
    )
    source = keys_first_from("`doc`", ["Pat", "Kind"], "`Stamp` >= 1990", " ORDER BY `Stamp` LIMIT 5")
    # The select list names the table's own columns: the keys are renamed inside the derived table.
    select = f"SELECT `Pat`, `Kind`, `Stamp`, LENGTH(`Body`) FROM {source} WHERE TRUE ORDER BY `Stamp` LIMIT 5"
    assert [tuple(r) for r in mysql_query(server, select)] == [
        (995, "b", 1990, 10000),
        (995, "a", 1991, 10000),
        (996, "b", 1992, 10000),
        (996, "a", 1993, 10000),
        (997, "b", 1994, 10000),
    ]
    # The wide rows are read by their primary key (eq_ref), never scanned: first the keys' scan (a derived
    # table, or the same table merged in when there is no LIMIT), then the table by key.
    merged = keys_first_from("`doc`", ["Pat", "Kind"], "`Stamp` >= 1990")
    for sql in (select, f"SELECT `Pat`, LENGTH(`Body`) FROM {merged} WHERE TRUE ORDER BY `Stamp`"):
        outer = [(str(row[2]), row[3]) for row in mysql_query(server, "EXPLAIN " + sql) if row[0] == 1]
        assert len(outer) == 2, outer
        assert outer[0][0] in ("<derived2>", "cf_scan"), outer
        assert outer[1] == ("doc", "eq_ref"), outer
