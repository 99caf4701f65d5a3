"""Catalog signals: a table is left alone only when neither server wrote it since the last verified night."""

from __future__ import annotations

import time
from collections.abc import Callable

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental import catalog_signals
from clinicflow.opendental.metrics import TableOutcome
from clinicflow.opendental.tables.config import TableConfig
from tests.conftest import mysql_exec

from .conftest import pg_exec

_DDL = "CREATE TABLE `{t}` (`Num` bigint NOT NULL PRIMARY KEY, `Name` varchar(20) NOT NULL) ENGINE=MyISAM"


def _past_second() -> None:
    """Signals are trusted once the catalog's update time is older than the reading's second."""
    time.sleep(1.1)


def _read(server: MySQLServer) -> dict[str, str | None]:
    conn = server.connect()
    try:
        return catalog_signals.read_signals(conn)
    finally:
        conn.close()


def _unchanged(pg: PostgresServer, source: MySQLServer, replica: MySQLServer, configs: dict[str, str]) -> set[str]:
    conn = pg.connect()
    try:
        return catalog_signals.unchanged_tables(conn, "clinicflow", "raw", _read(source), _read(replica), configs)
    finally:
        conn.close()


def test_only_tables_no_server_wrote_since_a_verified_night_are_unchanged(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    source, replica, pg = make_mysql_db("sigsrc"), make_mysql_db("sigrep"), make_pg_db("sigpg")
    tables = ("quiet", "silent", "deleted", "altered", "failed", "dropped", "retuned", "replica", "raw")
    for server in (source, replica):
        for t in tables:
            mysql_exec(server, _DDL.format(t=t), f"INSERT INTO `{t}` VALUES (1, 'a'), (2, 'b')")
    pg_exec(
        pg,
        "CREATE SCHEMA IF NOT EXISTS clinicflow",
        "CREATE SCHEMA IF NOT EXISTS raw",
        *(f"CREATE TABLE raw.{t} (x int)" for t in tables),
    )
    configs = {t: catalog_signals.config_signal(TableConfig(primary_key=["Num"])) for t in tables}
    _past_second()
    src_signals, rep_signals = _read(source), _read(replica)
    assert all(src_signals[t] is not None for t in tables)
    outcomes = [TableOutcome(t, verification="ok") for t in tables if t != "failed"]
    outcomes.append(TableOutcome("failed", status="failed", verification="differs"))
    conn = pg.connect()
    try:
        catalog_signals.ensure_table(conn, "clinicflow")
        assert catalog_signals.record(conn, "clinicflow", "raw", src_signals, rep_signals, configs, outcomes) == 8
    finally:
        conn.close()

    # Then: an update that moves no watermark, a delete, a definition change, a dropped raw table, a new
    # tables.yml entry, a write to the replica, one to raw. Each of those tables is visited; only "quiet" is not.
    mysql_exec(
        source,
        "UPDATE `silent` SET `Name` = 'c' WHERE `Num` = 1",
        "DELETE FROM `deleted` WHERE `Num` = 2",
        "ALTER TABLE `altered` MODIFY `Name` varchar(30) NOT NULL",
    )
    mysql_exec(replica, "UPDATE `replica` SET `Name` = 'z' WHERE `Num` = 2")
    pg_exec(pg, "DROP TABLE raw.dropped", "INSERT INTO raw.raw VALUES (1)")
    _wait_raw_counted(pg)
    configs["retuned"] = catalog_signals.config_signal(TableConfig(primary_key=["Num"], batch_size=10))
    _past_second()
    assert _unchanged(pg, source, replica, configs) == {"quiet"}
    outcome = catalog_signals.unchanged_outcome("quiet")
    assert outcome.status == "unchanged"
    assert outcome.verification == "ok"
    assert not outcome.failed


def _wait_raw_counted(pg: PostgresServer) -> None:
    """PostgreSQL publishes a session's write counters when it ends: wait until the insert is counted."""
    from .conftest import pg_query

    for _ in range(100):
        if pg_query(pg, "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'raw.raw'::regclass")[0][0]:
            return
        time.sleep(0.1)


def test_a_table_checksummed_in_slices_is_visited_until_every_slice_was_compared_since_its_last_write(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    """A silent update outside tonight's slice, then quiet nights: the table is not left alone (by the catalog)
    until the other slices were compared too, so the update is found within the sweep's nights."""
    source, replica, pg = make_mysql_db("slicesrc"), make_mysql_db("slicerep"), make_pg_db("slicepg")
    for server in (source, replica):
        mysql_exec(server, _DDL.format(t="log"), "INSERT INTO `log` VALUES (1, 'a'), (2, 'b')")
    pg_exec(
        pg, "CREATE SCHEMA IF NOT EXISTS clinicflow", "CREATE SCHEMA IF NOT EXISTS raw", "CREATE TABLE raw.log (x int)"
    )
    configs = {"log": catalog_signals.config_signal(TableConfig(primary_key=["Num"]))}

    def night(slice_no: int) -> set[str]:
        _past_second()
        src, rep = _read(source), _read(replica)
        swept = f"replica keys+checksums slice {slice_no}/3 (1/3 ranges checksummed)"
        conn = pg.connect()
        try:
            catalog_signals.ensure_table(conn, "clinicflow")
            catalog_signals.record(
                conn,
                "clinicflow",
                "raw",
                src,
                rep,
                configs,
                [TableOutcome("log", mode="incremental", verification="ok", swept=swept)],
            )
        finally:
            conn.close()
        _past_second()
        return _unchanged(pg, source, replica, configs)

    assert night(1) == set()  # one slice of three compared
    assert night(2) == set()
    mysql_exec(source, "UPDATE `log` SET `Name` = 'c' WHERE `Num` = 2")  # a write: the count starts again
    assert night(3) == set()
    assert night(3) == set()  # the same slice twice (two runs in a day) adds nothing
    assert night(1) == set()
    assert night(2) == {"log"}  # slices 3, 1 and 2 compared with no write in between: left alone
    # A full copy reads every row: whole at once.
    mysql_exec(source, "DELETE FROM `log` WHERE `Num` = 1")
    _past_second()
    conn = pg.connect()
    try:
        catalog_signals.record(
            conn,
            "clinicflow",
            "raw",
            _read(source),
            _read(replica),
            configs,
            [TableOutcome("log", mode="full", verification="ok", swept="verification keys+checksums slice 2/3 (x)")],
        )
    finally:
        conn.close()
    _past_second()
    assert _unchanged(pg, source, replica, configs) == {"log"}
