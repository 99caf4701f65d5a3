"""CDC against a MariaDB with a row-based binlog: three days of changes, DDL mid-stream, replica and raw equal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from clinicflow.connectors.mysql.sessions import raw_connection
from clinicflow.opendental.cdc.checks import CdcError, precheck_problems
from clinicflow.opendental.cdc.lag import cdc_lag
from clinicflow.opendental.cdc.runner import CdcOptions, CdcRunner
from clinicflow.opendental.cdc.state import cdc_active_tables
from tests.conftest import mysql_exec
from tests.integration.opendental.cdc.cdc_support import assert_equal, create_source, mutate_day, write_tables_yml


def _catch_up(src, replica, pg, config, **kw):
    return CdcRunner(src, replica, pg, config, CdcOptions(server_id=5001, until_caught_up=True, **kw)).run()


def test_three_days_of_changes_reach_replica_and_raw(make_binlog_db, make_mysql_db, make_pg_db, tmp_path: Path):
    src, replica, pg = make_binlog_db("cdcsrc"), make_mysql_db("cdcrep"), make_pg_db("cdcraw")
    _, config = write_tables_yml(tmp_path)
    create_source(src)
    first = _catch_up(src, replica, pg, config)
    assert first.snapshot
    assert not first.failed_tables
    assert_equal(src, replica, pg, config)
    assert _catch_up(src, replica, pg, config).events == 0  # reading starts at the stored position

    mutate_day(src, 1)
    report = _catch_up(src, replica, pg, config)
    assert not report.snapshot
    assert report.events > 0
    assert_equal(src, replica, pg, config)

    # Day 2: a column added mid-stream, changes before and after it.
    mutate_day(src, 2)
    mysql_exec(src, "ALTER TABLE patient ADD COLUMN Middle varchar(20) NULL DEFAULT 'mid' AFTER LName")
    mutate_day(src, 22, extra_column=True)
    report = _catch_up(src, replica, pg, config)
    assert not report.failed_tables
    assert_equal(src, replica, pg, config)

    # Day 3: a widened type and a dropped column, then a change no widening covers (fails that table only).
    mysql_exec(src, "ALTER TABLE patient MODIFY LName varchar(250) NOT NULL", "ALTER TABLE patient DROP COLUMN Middle")
    mutate_day(src, 3)
    report = _catch_up(src, replica, pg, config)
    assert not report.failed_tables
    assert_equal(src, replica, pg, config)
    mysql_exec(src, "ALTER TABLE procnote MODIFY Body int NULL")
    report = _catch_up(src, replica, pg, config)
    assert "not a widening" in report.failed_tables["procnote"]
    assert "patient" not in report.failed_tables

    lags = cdc_lag(replica, src)
    assert lags[0].events_behind == 0
    assert lags[0].seconds_behind == 0
    assert "procnote" in lags[0].failed_tables
    conn = raw_connection(replica)
    try:
        assert cdc_active_tables(conn) == set()  # stopped: the nightly copies every table again
    finally:
        conn.close()


def test_source_without_binlog_is_refused_naming_the_setting(mysql_server):
    problems = precheck_problems(mysql_server, server_id=5002, retention_hours=24)
    assert any("log_bin" in p for p in problems)
    assert any("binlog_format" in p for p in problems)


def test_missing_replication_grants_are_named(
    binlog_mariadb, make_binlog_db, make_mysql_db, make_pg_db, tmp_path: Path
):
    src = make_binlog_db("cdcgrant")
    user = src.database[-12:]
    mysql_exec(
        binlog_mariadb,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'",
        f"GRANT SELECT ON `{src.database}`.* TO '{user}'@'%'",
    )
    try:
        limited = src.model_copy(update={"username": user, "password": SecretStr(f"pw-{user}")})
        problems = precheck_problems(limited, server_id=5003, retention_hours=24)
        assert any("REPLICATION SLAVE" in p for p in problems)
        assert any("REPLICATION CLIENT" in p for p in problems)
        _, config = write_tables_yml(tmp_path)
        with pytest.raises(CdcError, match="REPLICATION SLAVE"):
            _catch_up(limited, make_mysql_db("cdcgr"), make_pg_db("cdcgr"), config)
    finally:
        mysql_exec(binlog_mariadb, f"DROP USER '{user}'@'%'")


def test_nightly_skips_the_watermark_copy_of_a_table_cdc_keeps_current(
    make_binlog_db, make_mysql_db, make_pg_db, tmp_path: Path
):
    from clinicflow.opendental.cdc import state
    from clinicflow.opendental.replication.replica_copy import replicate_table_once
    from clinicflow.opendental.warehouse.load_steps import load_table_once

    src, replica, pg = make_binlog_db("cdcnight"), make_mysql_db("cdcnight"), make_pg_db("cdcnight")
    _, config = write_tables_yml(tmp_path)
    create_source(src)
    _catch_up(src, replica, pg, config)
    conn = raw_connection(replica)
    try:
        state.set_status(conn, state.source_id(src), "running")  # as a live CDC between two batches
        assert cdc_active_tables(conn) == {"patient", "procnote"}
    finally:
        conn.close()
    # A change CDC has not applied yet: the nightly's reconciliation repairs it, its watermark copy does not run.
    mysql_exec(src, "UPDATE patient SET LName = 'nightly', DateTStamp = DateTStamp + INTERVAL 1 DAY LIMIT 1")
    copied = replicate_table_once(src, replica, "patient", config.effective("patient"))
    assert copied["mode"] == "incremental"
    assert copied["rows"] == 0
    outcome = load_table_once(replica, pg, "patient", config.effective("patient"), replication=copied)
    assert outcome.status == "ok"
    assert outcome.rows == 0
    assert_equal(src, replica, pg, config)


def test_a_purged_position_is_refused_naming_the_retention_setting(
    binlog_mariadb, make_binlog_db, make_mysql_db, make_pg_db, tmp_path: Path
):
    from clinicflow.opendental.cdc.checks import binlog_files, master_position

    src, replica, pg = make_binlog_db("cdcpurge"), make_mysql_db("cdcpurge"), make_pg_db("cdcpurge")
    _, config = write_tables_yml(tmp_path)
    create_source(src, rows=5)
    _catch_up(src, replica, pg, config)
    conn = raw_connection(binlog_mariadb)
    try:
        stored = master_position(conn).file
        # MariaDB keeps a file until its crash-recovery checkpoint has moved on: flush and purge until it is gone.
        for _ in range(100):
            with conn.cursor() as cur:
                cur.execute("FLUSH BINARY LOGS")
                cur.execute(f"PURGE BINARY LOGS TO '{master_position(conn).file}'")
            if stored not in binlog_files(conn):
                break
            time.sleep(0.1)
        assert stored not in binlog_files(conn)
    finally:
        conn.close()
    with pytest.raises(CdcError, match=r"purged.*binlog_expire_logs_seconds.*--resnapshot"):
        _catch_up(src, replica, pg, config)
    assert _catch_up(src, replica, pg, config, resnapshot=True).snapshot
    assert_equal(src, replica, pg, config)
