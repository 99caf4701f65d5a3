"""nightly_etl end to end on the real MariaDB and PostgreSQL: first night, a night after changes, a type change."""

from __future__ import annotations

import pytest

from clinicflow.connectors.mysql import catalog, checksums, sessions
from clinicflow.core.sql import quote_qualified
from clinicflow.opendental import metrics
from clinicflow.opendental.warehouse import load_plan, verify
from clinicflow_dev import generator
from tests.integration.opendental.warehouse.conftest import RECONCILED, EtlEnv, compare_rows, mysql_exec, pg_query
from tests.support.artifacts import artifact_rows


def _verify_all(env: EtlEnv) -> None:
    """Each table: replica equals source (byte checksums), raw equals replica (counts + canonical checksums)."""
    my = sessions.raw_connection(env.replica)
    pg = env.pg.connect()
    try:
        for table in env.counts:
            assert checksums.table_checksum(env.replica, table) == checksums.table_checksum(env.source, table), table
            plan = load_plan.plan_load(catalog.read_table(my, table), env.config(table))
            result = verify.verify_table(my, pg, plan, bucket_rows=500)
            assert result.ok, result.summary()
    finally:
        my.close()
        pg.close()


@pytest.mark.slow
def test_nightly_loads_every_table_then_follows_changes(etl_env: EtlEnv, prefect_server: None) -> None:
    from flows.nightly import nightly_etl

    night = nightly_etl(tables_file=str(etl_env.tables_file), return_state=True)
    rows = night.result()
    by_table = {r["table"]: r for r in rows}
    assert set(by_table) == set(etl_env.counts)
    assert all(r["status"] == "ok" and r["verification"] == "ok" for r in rows), rows
    assert by_table["procedurelog"]["mode"] == "full"
    assert by_table["procedurelog"]["rows"] == 8000
    # Converted values are counted per column (edgecase: one zero date per date column, NUL in two texts).
    assert by_table["edgecase"]["zero_dates"] == 2
    assert by_table["edgecase"]["nul_bytes"] == 2
    _verify_all(etl_env)
    assert (
        compare_rows(etl_env.replica, etl_env.pg, generator.EDGECASE_TABLE, etl_env.config(generator.EDGECASE_TABLE))
        == 5
    )
    compare_rows(etl_env.replica, etl_env.pg, "patplan", etl_env.config("patplan"))

    # Metrics and the artifact of the night.
    conn = etl_env.pg.connect()
    try:
        runs = metrics.last_runs(conn, 5)
        assert runs[0].status == "ok"
        assert runs[0].tables_total == len(etl_env.counts)
        detail = {m["table_name"]: m for m in metrics.table_metrics(conn, runs[0].run_id)}
        assert detail["edgecase"]["zero_dates"] == 2
        assert detail["procedurelog"]["rows"] == 8000
    finally:
        conn.close()
    assert {r["table"] for r in artifact_rows(night, "nightly-etl")} == set(etl_env.counts)

    # The next night: inserts, updates, deletes, a new column, a changed lookup table.
    generator.apply_changes(etl_env.source, "procedurelog", inserts=120, updates=60, deletes=25)
    changed = generator.apply_changes(etl_env.source, "patient", inserts=40, updates=30, deletes=10)
    generator.apply_changes(etl_env.source, "appointment", inserts=30, updates=20)
    mysql_exec(
        etl_env.source,
        "ALTER TABLE `patient` ADD COLUMN `Nickname` varchar(40) NOT NULL DEFAULT 'none'",
        "UPDATE `patient` SET `Nickname` = CONCAT('nick', `PatNum`) WHERE `PatNum` % 7 = 0",
        "UPDATE `definition` SET `ItemName` = 'renamed' WHERE `DefNum` = 3",
        "UPDATE `edgecase` SET `TextMb3` = CONCAT('x', CHAR(0), 'y'), `DateTStamp` = '2024-07-01 00:00:00' "
        "WHERE `EdgeCaseNum` = 4",
    )
    rows = nightly_etl(tables_file=str(etl_env.tables_file))
    by_table = {r["table"]: r for r in rows}
    assert all(r["status"] in ("ok", "unchanged") and r["verification"] == "ok" for r in rows), rows
    assert by_table["procedurelog"]["mode"] == "incremental"
    assert by_table["patient"]["deleted_rows"] == 10
    assert by_table["procedurelog"]["deleted_rows"] == 25
    assert by_table["definition"]["mode"] == "full"  # a full_table table whose content changed
    assert by_table["clinic"]["status"] == "unchanged"  # one whose content did not
    assert by_table["edgecase"]["nul_bytes"] == 1
    _verify_all(etl_env)
    compare_rows(etl_env.replica, etl_env.pg, generator.EDGECASE_TABLE, etl_env.config(generator.EDGECASE_TABLE))
    nick = pg_query(
        etl_env.pg,
        f"SELECT count(*) FILTER (WHERE \"Nickname\" LIKE 'nick%%'), count(*) FILTER "
        f"(WHERE \"Nickname\" = 'none') FROM {quote_qualified('raw', 'patient', 'postgres')}",
    )
    source_nick = etl_env.source.connect()
    try:
        with source_nick.cursor() as cur:
            cur.execute("SELECT SUM(`Nickname` LIKE 'nick%'), SUM(`Nickname` = 'none') FROM `patient`")
            assert tuple(int(v) for v in cur.fetchone()) == nick[0]
    finally:
        source_nick.close()
    deleted = changed["deleted"]
    assert pg_query(etl_env.pg, 'SELECT count(*) FROM raw.patient WHERE "PatNum" = ANY(%s)', (deleted,))[0][0] == 0
    assert set(RECONCILED) <= set(by_table)


@pytest.mark.slow
def test_type_change_fails_only_that_table(etl_env: EtlEnv, prefect_server: None) -> None:
    from flows.nightly import TablesFailed, nightly_etl

    tables = ["clinic", "insplan", "patient", "edgecase"]
    nightly_etl(tables=tables, tables_file=str(etl_env.tables_file))
    mysql_exec(etl_env.source, "ALTER TABLE `clinic` MODIFY `IsHidden` varchar(10) NOT NULL DEFAULT ''")
    generator.apply_changes(etl_env.source, "patient", inserts=5, updates=5)
    night = nightly_etl(tables=tables, tables_file=str(etl_env.tables_file), return_state=True)
    with pytest.raises(TablesFailed, match="clinic"):
        night.result()
    rows = {r["table"]: r for r in artifact_rows(night, "nightly-etl")}
    assert rows["clinic"]["status"] == "failed"
    error = rows["clinic"]["error"]
    assert "IsHidden" in error, error
    assert "smallint" in error, error
    assert "varchar(10)" in error, error
    assert all(rows[t]["status"] in ("ok", "unchanged") for t in tables if t != "clinic"), rows
    assert rows["patient"]["rows"] >= 10
    # raw.clinic keeps its last good content and type.
    assert (
        pg_query(
            etl_env.pg,
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'raw.clinic'::regclass AND attname = 'IsHidden'",
        )[0][0]
        == "smallint"
    )
    conn = etl_env.pg.connect()
    try:
        last = metrics.last_runs(conn, 1)[0]
        assert last.status == "failed"
        assert last.failed_tables == ("clinic",)
    finally:
        conn.close()
    # Accepting the new type is an explicit full refresh of that table.
    rows = nightly_etl(tables=["clinic"], full_refresh=True, tables_file=str(etl_env.tables_file))
    assert rows[0]["status"] == "ok"
    assert rows[0]["verification"] == "ok"
