"""Verification names the key ranges and keys that differ.

Reconciliation repairs exactly the rows that differ, in both legs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql import catalog, checksums, sessions
from clinicflow.opendental import reconcile, small_tables
from clinicflow.opendental import sweep as sweeps
from clinicflow.opendental.replication import copy_plan, replica_reconcile
from clinicflow.opendental.tables.config import ExtractionStrategy, TableConfig
from clinicflow.opendental.warehouse import load_plan, load_steps, verify
from clinicflow_dev import generator
from tests.integration.opendental.warehouse.conftest import mysql_exec, pg_query
from tests.integration.opendental.warehouse.test_pgload import pg_query_exec

PROC = TableConfig(
    primary_key=["ProcNum"],
    extraction_strategy=ExtractionStrategy.incremental,
    incremental_columns=["DateTStamp"],
    batch_size=1000,
)
PATPLAN = TableConfig(primary_key=["PatNum", "Ordinal"], batch_size=200)


@pytest.fixture
def loaded(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> tuple[MySQLServer, PostgresServer]:
    replica, pg = make_mysql_db("ver"), make_pg_db("ver")
    generator.create_schema(replica, edge_cases=False)
    generator.fill_table(replica, "procedurelog", 5000)
    generator.fill_table(replica, "patplan", 900)
    load_steps.setup_target(pg)
    assert load_steps.load_table_once(replica, pg, "procedurelog", PROC).verification == "ok"
    assert load_steps.load_table_once(replica, pg, "patplan", PATPLAN).verification == "ok"
    return replica, pg


def _verify(
    replica: MySQLServer, pg: PostgresServer, table: str, config: TableConfig, sweep: sweeps.Sweep | None = None
) -> verify.VerifyResult:
    my, pgc = sessions.raw_connection(replica), pg.connect()
    try:
        return verify.verify_table(my, pgc, load_plan.plan_load(catalog.read_table(my, table), config), sweep=sweep)
    finally:
        my.close()
        pgc.close()


def test_verification_names_ranges_and_keys(loaded: tuple[MySQLServer, PostgresServer]) -> None:
    replica, pg = loaded
    pg_query_exec(pg, 'UPDATE raw.procedurelog SET "ClaimNote" = "ClaimNote" || \'!\' WHERE "ProcNum" = 4321')
    pg_query_exec(pg, 'DELETE FROM raw.procedurelog WHERE "ProcNum" = 17')
    pg_query_exec(pg, 'UPDATE raw.procedurelog SET "ProcDate" = NULL WHERE "ProcNum" = 2500')
    result = _verify(replica, pg, "procedurelog", PROC)
    assert result.status == "differs"
    assert result.source_rows == 5000
    assert result.raw_rows == 4999
    assert len(result.diffs) == 3
    assert result.buckets == 50  # ~100-row ranges sampled from the key
    by_key = {(d.missing_in_raw + d.changed)[0]: d for d in result.diffs}
    assert by_key["17"].missing_count == 1
    assert by_key["17"].key_range == "ProcNum [..101)"
    assert by_key["4321"].changed == ["4321"]
    assert by_key["4321"].key_range == "ProcNum [4301..4401)"
    assert by_key["2500"].changed == ["2500"]
    assert "missing in raw (e.g. 17)" in result.summary()


def _reconcile_raw(
    replica: MySQLServer, pg: PostgresServer, table: str, config: TableConfig, sweep: sweeps.Sweep
) -> tuple[reconcile.ReconcileStats, verify.VerifyResult]:
    my, pgc = sessions.raw_connection(replica, streaming=True), pg.connect()
    try:
        plan = load_plan.plan_load(catalog.read_table(my, table), config)
        return verify.reconcile_raw(replica, my, pgc, plan, sweep)
    finally:
        my.close()
        pgc.close()


def test_reconciliation_repairs_deletes_backdated_inserts_and_silent_updates_in_raw(
    loaded: tuple[MySQLServer, PostgresServer],
) -> None:
    replica, pg = loaded
    mysql_exec(
        replica,
        "DELETE FROM `procedurelog` WHERE `ProcNum` IN (3, 1500, 1501, 4999)",
        "DELETE FROM `patplan` WHERE `PatNum` IN (10, 11, 500)",
        # A backdated insert and an update that leaves the change stamp alone: no watermark sees them.
        "INSERT INTO `procedurelog` (`ProcNum`, `PatNum`, `DateTStamp`) VALUES (7000, 1, '2001-01-01')",
        "UPDATE `procedurelog` SET `ProcFee` = `ProcFee` + 1, `DateTStamp` = `DateTStamp` "
        "WHERE `ProcNum` IN (42, 4242)",
        "UPDATE `patplan` SET `Ordinal` = `Ordinal` + 100 WHERE `PatNum` = 77",
    )
    assert _verify(replica, pg, "procedurelog", PROC).status == "differs"
    stats, result = _reconcile_raw(replica, pg, "procedurelog", PROC, sweeps.Sweep())
    assert (stats.rows_deleted, stats.rows_missing, stats.rows_changed) == (4, 1, 2), stats
    # Keys 1..5000 plus 7000: dense, so 100-key ranges cut by arithmetic up to the new maximum.
    assert result.ok
    assert stats.ranges == 70
    assert stats.ranges_hashed == 70
    patplan_rows = pg_query(pg, 'SELECT count(*) FROM raw.patplan WHERE "PatNum" = 77')[0][0]
    stats, result = _reconcile_raw(replica, pg, "patplan", PATPLAN, sweeps.Sweep())
    # A composite key changed in place is a delete and an insert.
    assert (stats.rows_deleted, stats.rows_missing) == (3 + patplan_rows, patplan_rows), stats
    assert result.ok, stats
    for table, config in (("procedurelog", PROC), ("patplan", PATPLAN)):
        assert _verify(replica, pg, table, config).ok
        again, _ = _reconcile_raw(replica, pg, table, config, sweeps.Sweep())
        assert again.ranges_recopied == 0  # nothing left to repair
    assert pg_query(pg, "SELECT count(*) FROM raw.procedurelog")[0][0] == 4997


def test_keys_only_and_sliced_sweeps(loaded: tuple[MySQLServer, PostgresServer]) -> None:
    replica, pg = loaded
    mysql_exec(
        replica,
        "DELETE FROM `procedurelog` WHERE `ProcNum` = 250",
        "UPDATE `procedurelog` SET `ProcFee` = `ProcFee` + 1, `DateTStamp` = `DateTStamp` WHERE `ProcNum` = 4242",
    )
    keys_only = sweeps.Sweep(checksums=False)
    stats, _ = _reconcile_raw(replica, pg, "procedurelog", PROC, keys_only)
    assert (stats.rows_deleted, stats.rows_changed, stats.ranges_hashed) == (1, 0, 0)
    assert stats.swept == "keys"
    # Ranges are checksummed one slice a night: the silent update is found on the night of its slice.
    found = []
    for night in range(7):
        sweep = sweeps.Sweep(slices=7, night=night)
        stats, result = _reconcile_raw(replica, pg, "procedurelog", PROC, sweep)
        assert result.ok
        assert stats.ranges_hashed in (7, 8)
        found.append(stats.rows_changed)
    assert sorted(found) == [0, 0, 0, 0, 0, 0, 1]
    assert _verify(replica, pg, "procedurelog", PROC).ok


def _reconcile_replica(
    source: MySQLServer, replica: MySQLServer, table: str, config: TableConfig
) -> reconcile.ReconcileStats:
    """The replica leg's reconciliation of ``table`` with every range's checksums."""
    src, rep = sessions.raw_connection(source), sessions.raw_connection(replica)
    try:
        plan = copy_plan.plan_copy(src, rep, table, config)
    finally:
        src.close()
        rep.close()
    return replica_reconcile.reconcile_replica(source, replica, plan, sweeps.Sweep())


def test_reconcile_the_replica_against_the_source(make_mysql_db: Callable[[str], MySQLServer]) -> None:
    source, replica = make_mysql_db("rsrc"), make_mysql_db("rrep")
    for server in (source, replica):
        generator.create_schema(server, edge_cases=False)
        generator.fill_table(server, "patplan", 900)
        generator.fill_table(server, "procedurelog", 3000)
    mysql_exec(
        source,
        "DELETE FROM `patplan` WHERE `PatNum` BETWEEN 100 AND 149",
        "DELETE FROM `procedurelog` WHERE `ProcNum` % 500 = 3",
        "INSERT INTO `procedurelog` (`ProcNum`, `PatNum`, `DateTStamp`) VALUES (9001, 1, '2001-01-01')",
        "UPDATE `procedurelog` SET `ClaimNote` = 'silent', `DateTStamp` = `DateTStamp` WHERE `ProcNum` = 77",
    )
    configs = {"patplan": PATPLAN, "procedurelog": PROC}
    expected = {"patplan": (50, 0, 0), "procedurelog": (6, 1, 1)}
    for table, config in configs.items():
        stats = _reconcile_replica(source, replica, table, config)
        assert (stats.rows_deleted, stats.rows_missing, stats.rows_changed) == expected[table], (table, stats)
        assert checksums.table_checksum(source, table) == checksums.table_checksum(replica, table)


def test_ranges_of_wide_rows_hold_about_a_megabyte_so_a_silent_update_recopies_little(
    make_mysql_db: Callable[[str], MySQLServer],
) -> None:
    """300 documents of 50 KB: ranges of ~20 rows (1 MB), not 3 ranges of 100 rows (5 MB each)."""
    source, replica = make_mysql_db("wsrc"), make_mysql_db("wrep")
    for server in (source, replica):
        mysql_exec(
            server,
            "CREATE TABLE document (DocNum bigint NOT NULL PRIMARY KEY, Thumbnail longblob, "
            "DateTStamp timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp()) ENGINE=MyISAM",
            "INSERT INTO document SELECT seq, REPEAT(UNHEX(MD5(seq)), 3200), '2024-01-01' + INTERVAL seq MINUTE "
            "FROM seq_1_to_300",
        )
    mysql_exec(source, "UPDATE document SET Thumbnail = REVERSE(Thumbnail), DateTStamp = DateTStamp WHERE DocNum = 77")
    config = TableConfig(
        primary_key=["DocNum"], extraction_strategy=ExtractionStrategy.incremental, incremental_columns=["DateTStamp"]
    )
    stats = _reconcile_replica(source, replica, "document", config)
    assert 10 <= stats.ranges <= 30, stats
    assert (stats.rows_changed, stats.ranges_recopied) == (1, 1), stats
    assert checksums.table_checksum(source, "document") == checksums.table_checksum(replica, "document")


def test_a_composite_key_whose_first_column_repeats_plans_and_reconciles(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    """Three PatNum values of 200 rows each: sampled boundaries repeat, ranges must not (one per value, one below)."""
    source, replica, pg = make_mysql_db("dsrc"), make_mysql_db("drep"), make_pg_db("dpg")
    for server in (source, replica):
        mysql_exec(
            server,
            "CREATE TABLE `visits` (`PatNum` bigint NOT NULL, `Seq` int NOT NULL, "
            "`Note` varchar(20) NOT NULL, PRIMARY KEY (`PatNum`, `Seq`)) ENGINE=MyISAM",
            "INSERT INTO `visits` SELECT 1 + seq % 3, seq, CONCAT('n', seq) FROM seq_1_to_600",
        )
    config = TableConfig(primary_key=["PatNum", "Seq"], batch_size=200)
    load_steps.setup_target(pg)
    assert load_steps.load_table_once(replica, pg, "visits", config).verification == "ok"
    mysql_exec(
        source,
        "DELETE FROM `visits` WHERE `Seq` = 7",
        "UPDATE `visits` SET `Note` = 'silent' WHERE `Seq` = 8",
        "INSERT INTO `visits` VALUES (2, 9001, 'late')",
    )
    stats = _reconcile_replica(source, replica, "visits", config)
    assert stats.ranges == 4, stats
    assert (stats.rows_deleted, stats.rows_missing, stats.rows_changed) == (1, 1, 1), stats
    raw_stats, result = _reconcile_raw(replica, pg, "visits", config, sweeps.Sweep())
    assert (raw_stats.rows_deleted, raw_stats.rows_missing, raw_stats.rows_changed) == (1, 1, 1)
    assert result.ok
    assert checksums.table_checksum(source, "visits") == checksums.table_checksum(replica, "visits")


def test_a_full_load_after_a_reconciled_copy_records_the_replica_leg(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    source, replica, pg = make_mysql_db("fsrc"), make_mysql_db("frep"), make_pg_db("fpg")
    generator.create_schema(source, edge_cases=False)
    generator.fill_table(source, "procedurelog", 500)
    load_steps.setup_target(pg)
    configs = {"procedurelog": PROC}
    first = small_tables.replicate_and_load_small(source, replica, pg, configs)
    assert first[0].status == "ok"
    assert first[0].mode == "full"
    # raw lost its table (a dbt mishap): tonight's copy is incremental and reconciled, the load a full one.
    pg_query_exec(pg, "DROP TABLE raw.procedurelog")
    mysql_exec(source, "DELETE FROM `procedurelog` WHERE `ProcNum` = 5")
    second = small_tables.replicate_and_load_small(source, replica, pg, configs)[0]
    assert second.status == "ok", second.error
    assert second.mode == "full", second.error
    assert second.verification == "ok", second.error
    assert second.reconciliation["replica"]["rows_deleted"] == 1
    assert second.rows == 499


def test_default_sweep_is_sized_and_finds_a_silent_update_within_its_window(
    loaded: tuple[MySQLServer, PostgresServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """reconcile_slices unset (0): a table past AUTO_FULL_RANGES ranges gets slices; keys are still checked nightly."""
    replica, pg = loaded
    assert TableConfig().reconcile_slices == 0
    assert sweeps.sweep_for(TableConfig()).slices == 0
    monkeypatch.setattr(sweeps, "AUTO_FULL_RANGES", 10)  # 5,000 rows: ~50 ranges -> 5 slices
    mysql_exec(
        replica,
        "UPDATE `procedurelog` SET `ProcFee` = `ProcFee` + 1, `DateTStamp` = `DateTStamp` WHERE `ProcNum` = 3333",
    )
    found, window = [], 0
    for night in range(sweeps.AUTO_MAX_SLICES):
        mysql_exec(replica, f"DELETE FROM `procedurelog` WHERE `ProcNum` = {100 + night}")
        stats, result = _reconcile_raw(replica, pg, "procedurelog", PROC, sweeps.Sweep(slices=0, night=night))
        assert result.ok
        assert stats.rows_deleted == 1  # deletes: every night, from the key summaries
        window = int(stats.swept.rsplit("/", 1)[-1])
        found.append(stats.rows_changed)
        if len(found) == window:
            break
    assert window == 5, (window, found)
    assert sum(found) == 1, (window, found)
    assert _verify(replica, pg, "procedurelog", PROC).ok


def test_a_full_loads_verification_counts_every_range_and_checksums_tonights_slice(
    loaded: tuple[MySQLServer, PostgresServer],
) -> None:
    replica, pg = loaded
    sliced = PROC.model_copy(update={"reconcile_slices": 5})
    outcome = load_steps.load_table_once(replica, pg, "procedurelog", sliced, load_steps.LoadOptions(full_refresh=True))
    assert (outcome.status, outcome.verification) == ("ok", "ok")
    # The metrics say what the verification compared: keys everywhere, checksums in one slice of five.
    assert outcome.swept is not None
    assert re.fullmatch(r"verification keys\+checksums slice [1-5]/5 \(10/50 ranges checksummed\)", outcome.swept)
    # 50 ranges of 100 keys in 5 slices: night 0 checksums keys 1-1000, night 3 keys 3001-4000.
    pg_query_exec(pg, 'DELETE FROM raw.procedurelog WHERE "ProcNum" = 2222')  # outside both slices
    pg_query_exec(pg, 'UPDATE raw.procedurelog SET "ProcFee" = "ProcFee" + 1 WHERE "ProcNum" IN (555, 3555)')
    nights = {
        night: _verify(
            replica,
            pg,
            "procedurelog",
            sliced,
            sweeps.load_verification_sweep(sweeps.Sweep(slices=5, night=night)),
        )
        for night in (0, 3)
    }
    for night, changed in ((0, "555"), (3, "3555")):
        result = nights[night]
        assert (result.status, result.buckets, result.hashed) == ("differs", 50, 10)
        assert sorted(k for d in result.diffs for k in d.missing_in_raw) == ["2222"]  # counts: every range
        assert [k for d in result.diffs for k in d.changed] == [changed]  # values: tonight's slice only
    clean = _verify(replica, pg, "patplan", PATPLAN)
    assert clean.ok
    assert clean.hashed is None
    assert "checksummed ranges equal" in clean.summary()
    sliced_night = _verify(replica, pg, "patplan", PATPLAN, sweeps.Sweep(slices=3, night=1))
    assert sliced_night.ok
    assert f"row checksums in {sliced_night.hashed} of them" in sliced_night.summary()


def _compare_raw(replica: MySQLServer, pg: PostgresServer, sweep: sweeps.Sweep) -> reconcile.Comparison:
    my, pgc = sessions.raw_connection(replica), pg.connect()
    try:
        plan = load_plan.plan_load(catalog.read_table(my, "procedurelog"), PROC)
        return reconcile.compare(verify.replica_side(my, plan), verify.raw_side(pgc, plan), sweep)
    finally:
        my.close()
        pgc.close()


def test_equal_totals_spare_the_per_range_counts_and_unequal_ones_count_every_range(
    loaded: tuple[MySQLServer, PostgresServer],
) -> None:
    replica, pg = loaded
    night = sweeps.Sweep(slices=5, night=2)  # ranges [20, 30) of 50 checksummed tonight
    equal = _compare_raw(replica, pg, night)
    assert not equal.differing
    assert equal.hashed == 10
    assert sorted(equal.source) == list(range(20, 30))  # the totals vouched for the other 40 ranges
    assert (equal.source_rows, equal.target_rows) == (5000, 5000)

    # A silent update in the slice is found by its checksum while the totals stay equal.
    pg_query_exec(pg, 'UPDATE raw.procedurelog SET "ProcFee" = "ProcFee" + 1 WHERE "ProcNum" = 2550')
    changed = _compare_raw(replica, pg, night)
    assert [r.index for r in changed.differing] == [25]
    assert sorted(changed.source) == list(range(20, 30))

    # A row deleted outside the slice and one inserted under a new key: the same count, another key
    # sum, so every range is counted and both ranges are named.
    pg_query_exec(pg, 'UPDATE raw.procedurelog SET "ProcNum" = 5017 WHERE "ProcNum" = 17')
    moved = _compare_raw(replica, pg, night)
    assert (moved.source_rows, moved.target_rows) == (5000, 5000)
    assert len(moved.source) == 50
    assert [r.index for r in moved.differing] == [0, 25, 49]
