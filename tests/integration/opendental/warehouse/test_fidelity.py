"""Every row, every night: sparse keys, JSON NULs, reconciliation by default, one table's failure never the run's.

All against the real MariaDB and PostgreSQL; the nightly runs as users run it (no flags).
"""

from __future__ import annotations

import json
import random
import resource
from collections.abc import Callable

import pytest
import yaml

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql import catalog, checksums, sessions
from clinicflow.opendental import metrics
from clinicflow.opendental.chunks import walk_boundaries
from clinicflow.opendental.replication import replica_copy
from clinicflow.opendental.tables.config import ExtractionStrategy, TableConfig
from clinicflow.opendental.warehouse import full_load, load_plan, load_steps
from clinicflow_dev import generator
from tests.integration.opendental.warehouse.conftest import EtlEnv, compare_rows, mysql_exec, pg_query
from tests.integration.opendental.warehouse.test_nightly import _verify_all
from tests.support.artifacts import artifact_rows

BATCH = 500


def _sparse_source(source: MySQLServer) -> dict[str, list[int]]:
    """Three InnoDB tables (clustered: full loads read key ranges): random 63-bit keys, a 5,000,000 gap, negatives."""
    rng = random.Random(13)
    keys = {
        "randkeys": sorted(rng.sample(range(2**62, 2**63 - 1), 3000)),
        "gapkeys": list(range(1, 1501)) + list(range(5_001_501, 5_003_001)),
        "negkeys": list(range(-2000, 1000)),
    }
    for table, values in keys.items():
        mysql_exec(
            source,
            f"CREATE TABLE `{table}` (`Id` bigint NOT NULL PRIMARY KEY, `Note` varchar(40) NULL, "
            "`Stamp` datetime NOT NULL) ENGINE=InnoDB",
        )
        conn = source.connect(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO `{table}` VALUES (%s, %s, '2024-01-01 00:00:00')", [(k, f"n{k % 97}") for k in values]
                )
        finally:
            conn.close()
    return keys


def test_sparse_keys_plan_bounded_chunks_and_copy_every_row(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    source, replica, pg = make_mysql_db("spsrc"), make_mysql_db("sprep"), make_pg_db("sppg")
    keys = _sparse_source(source)
    load_steps.setup_target(pg)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the process's high-water mark
    for table, values in keys.items():
        config = TableConfig(
            primary_key=["Id"],
            batch_size=BATCH,
            extraction_strategy=ExtractionStrategy.incremental,
            incremental_columns=["Stamp"],
        )
        bound = -(-len(values) // BATCH)  # rows / batch_size, whatever the key span
        plan = replica_copy.prepare_table(source, replica, table, config)
        assert plan.mode == "full", (table, len(plan.ranges))
        assert len(plan.ranges) == bound, (table, len(plan.ranges))
        # Boundaries are keys of the table, every batch_size-th one.
        assert [r.lower for r in plan.ranges[1:]] == values[BATCH::BATCH]
        replica_copy.replicate_table_once(source, replica, table, config, full_refresh=True)
        assert checksums.table_checksum(source, table) == checksums.table_checksum(replica, table)
        conn = sessions.raw_connection(replica)
        try:
            assert walk_boundaries(conn, f"`{table}`", "Id", BATCH, "mysql") == values[BATCH::BATCH]
            plan_pg = load_plan.plan_load(catalog.read_table(conn, table), config)
            assert len(full_load.full_load_chunks(conn, plan_pg)) == bound
        finally:
            conn.close()
        outcome = load_steps.load_table_once(replica, pg, table, config)
        assert outcome.status == "ok", outcome
        assert outcome.verification == "ok", outcome
        assert outcome.rows == len(values), outcome
        assert compare_rows(replica, pg, table, config) == len(values)
        # The next night reconciles every ~100-row range, still bounded by the rows.
        again = replica_copy.replicate_table_once(source, replica, table, config)
        assert again["mode"] == "incremental"
        assert again["reconciled"].ranges == len(values) // 100
    # Memory follows the chunks, not the key span (a plan over [min, max] of these keys would need exabytes).
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 64, f"peak RSS grew by {grown_mb:.0f} MB copying three 3,000-row tables"


def test_json_nul_escapes_are_removed_counted_and_the_rest_kept(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    replica, pg = make_mysql_db("jsrep"), make_pg_db("jspg")
    values = {
        1: r'{"k\u0000ey": ["x\u0000", {"deep": "a\u0000b\u0000c"}], "n": 12345678901234567890.123456789}',
        2: r'{"literal": "\\u0000 is text", "odd": "\\\u0000z"}',
        3: r'{"plain": [1, 2.50, "tab\there"]}',
        4: None,
    }
    mysql_exec(replica, "CREATE TABLE `docs` (`Id` int NOT NULL PRIMARY KEY, `BodyJson` json NULL) ENGINE=MyISAM")
    conn = replica.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO `docs` VALUES (%s, %s)", list(values.items()))
    finally:
        conn.close()
    load_steps.setup_target(pg)
    outcome = load_steps.load_table_once(replica, pg, "docs", TableConfig(primary_key=["Id"]))
    assert outcome.status == "ok", outcome.error
    assert outcome.verification == "ok", outcome.error
    # Four escapes in row 1 and one in row 2 (its "\\u0000" is an escaped backslash: text, kept).
    assert outcome.conversions == {"BodyJson": {"nul_bytes": 5}}
    assert outcome.nul_bytes == 5
    rows = dict(pg_query(pg, 'SELECT "Id", "BodyJson"::text FROM raw.docs'))
    assert json.loads(rows[1]) == {"key": ["x", {"deep": "abc"}], "n": 12345678901234567890.123456789}
    assert "12345678901234567890.123456789" in rows[1]  # number precision kept by jsonb
    assert json.loads(rows[2]) == {"literal": "\\u0000 is text", "odd": "\\z"}
    assert json.loads(rows[3]) == {"plain": [1, 2.5, "tab\there"]}
    assert rows[4] is None


def test_zerofill_numbers_load_as_numbers_and_verify(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    """ZEROFILL pads the display ("00042"), not the number: the verification compared the padding and failed the
    table every night although raw held the right values."""
    replica, pg = make_mysql_db("zfrep"), make_pg_db("zfpg")
    mysql_exec(
        replica,
        "CREATE TABLE `zf` (`Id` int NOT NULL PRIMARY KEY, `Z` int(5) unsigned zerofill NULL, "
        "`D` decimal(8,2) zerofill NULL) ENGINE=MyISAM",
        "INSERT INTO `zf` VALUES (1, 42, 1.5), (2, 0, 0), (3, 4294967295, 999999.99), (4, NULL, NULL)",
    )
    load_steps.setup_target(pg)
    outcome = load_steps.load_table_once(replica, pg, "zf", TableConfig(primary_key=["Id"]))
    assert (outcome.status, outcome.verification) == ("ok", "ok"), outcome.error
    assert pg_query(pg, 'SELECT "Id", "Z", "D"::text FROM raw.zf ORDER BY 1') == [
        (1, 42, "1.50"),
        (2, 0, "0.00"),
        (3, 4294967295, "999999.99"),
        (4, None, None),
    ]


def _one_day_of_changes(env: EtlEnv, day: int) -> None:
    """What an OpenDental day does that a watermark cannot see, plus ordinary changes."""
    generator.apply_changes(env.source, "procedurelog", inserts=40, updates=20, deletes=15, seed=day)
    generator.apply_changes(env.source, "patient", inserts=10, updates=10, deletes=5, seed=day)
    base = 900_000 + day * 100
    mysql_exec(
        env.source,
        # Hard deletes and a backdated insert (change stamp years before the watermark).
        f"DELETE FROM `appointment` WHERE `AptNum` % 97 = {day}",
        f"INSERT INTO `procedurelog` (`ProcNum`, `PatNum`, `ClaimNote`, `DateTStamp`) VALUES "
        f"({base + 1}, 3, 'imported', '2001-02-03 04:05:06'), ({base + 2}, 4, 'imported', '2001-02-03 04:05:06')",
        # Silent updates: values change, the stamp does not.
        f"UPDATE `procedurelog` SET `ClaimNote` = CONCAT('silent', {day}), `DateTStamp` = `DateTStamp` "
        f"WHERE `ProcNum` % 211 = {day}",
        f"UPDATE `patient` SET `LName` = CONCAT(`LName`, '{day}'), `DateTStamp` = `DateTStamp` "
        f"WHERE `PatNum` % 301 = {day}",
        # A stampless table changed in place.
        f"UPDATE `definition` SET `ItemName` = CONCAT('day', {day}) WHERE `DefNum` % 5 = {day % 5}",
        # The append-only log loses its oldest rows (purge) and gains new ones.
        f"DELETE FROM `securitylog` ORDER BY `SecurityLogNum` LIMIT {100 * day}",
        f"INSERT INTO `securitylog` (`PermType`, `LogDateTime`, `LogText`) VALUES (1, NOW(), 'day {day}')",
    )


@pytest.mark.slow
def test_three_nights_of_changes_leave_replica_and_raw_equal_to_the_source(
    etl_env: EtlEnv, prefect_server: None
) -> None:
    from flows.nightly import nightly_etl

    # securitylog is an append-only log: its key is its watermark.
    data = yaml.safe_load(etl_env.tables_file.read_text())
    data["tables"]["securitylog"].update(extraction_strategy="incremental", incremental_columns=["SecurityLogNum"])
    etl_env.tables_file.write_text(yaml.safe_dump(data))

    nightly_etl(tables_file=str(etl_env.tables_file))
    keyed = [t for t in etl_env.counts if etl_env.config(t).primary_key]
    for day in (1, 2, 3):
        _one_day_of_changes(etl_env, day)
        rows = {r["table"]: r for r in nightly_etl(tables_file=str(etl_env.tables_file))}
        assert all(r["status"] in ("ok", "unchanged") and r["verification"] == "ok" for r in rows.values()), rows
        _verify_all(etl_env)  # replica = source byte for byte; raw = replica by canonical checksums
        for table in keyed:
            compare_rows(etl_env.replica, etl_env.pg, table, etl_env.config(table))
        # What the watermark missed was repaired by the reconciliation of the replica and recorded.
        replica_leg = json.loads(rows["procedurelog"]["reconciliation"])["replica"]
        assert replica_leg["rows_missing"] >= 2, replica_leg
        assert replica_leg["rows_changed"] >= 1, replica_leg
        assert json.loads(rows["securitylog"]["reconciliation"])["replica"]["rows_deleted"] == 100 * day
        assert rows["securitylog"]["deleted_rows"] == 100 * day  # and then from raw
        assert "keys+checksums" in rows["procedurelog"]["swept"]
    conn = etl_env.pg.connect()
    try:
        run = metrics.last_runs(conn, 1)[0]
        detail = {m["table_name"]: m for m in metrics.table_metrics(conn, run.run_id)}
    finally:
        conn.close()
    assert run.status == "ok"
    assert detail["securitylog"]["deleted_rows"] == 300
    assert detail["procedurelog"]["swept"].startswith("raw keys+checksums")


@pytest.mark.slow
def test_a_table_whose_planning_dies_fails_alone_and_the_run_is_recorded(
    etl_env: EtlEnv, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import TablesFailed, nightly_etl

    real_prepare = replica_copy.prepare_table

    def dying_prepare(src: MySQLServer, dst: MySQLServer, table: str, *args: object, **kwargs: object):
        if table == "procedurelog":
            raise MemoryError("simulated: planning procedurelog ran out of memory")
        return real_prepare(src, dst, table, *args, **kwargs)

    monkeypatch.setattr(replica_copy, "prepare_table", dying_prepare)
    tables = ["procedurelog", "patient", "appointment", "definition"]
    night = nightly_etl(tables=tables, tables_file=str(etl_env.tables_file), return_state=True)
    with pytest.raises(TablesFailed, match="procedurelog"):
        night.result()
    rows = {r["table"]: r for r in artifact_rows(night, "nightly-etl")}
    assert rows["procedurelog"]["status"] == "failed"
    assert "MemoryError" in rows["procedurelog"]["error"]
    assert all(rows[t]["status"] == "ok" for t in tables if t != "procedurelog"), rows
    conn = etl_env.pg.connect()
    try:
        run = metrics.last_runs(conn, 1)[0]
        assert run.status == "failed"
        assert run.failed_tables == ("procedurelog",)
        assert run.tables_total == 4
    finally:
        conn.close()
    assert compare_rows(etl_env.replica, etl_env.pg, "patient", etl_env.config("patient")) > 0
