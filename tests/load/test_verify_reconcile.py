"""Verification names the key ranges and keys that differ; delete reconciliation removes exactly the deleted rows."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow import generator, load_steps, pgload, verify
from clinicflow.config import ExtractionStrategy, TableConfig
from tests.load.conftest import mysql_exec, pg_query
from tests.load.test_pgload import pg_query_exec

PROC = TableConfig(primary_key=["ProcNum"], extraction_strategy=ExtractionStrategy.incremental,
                   incremental_columns=["DateTStamp"], batch_size=1000)
PATPLAN = TableConfig(primary_key=["PatNum", "Ordinal"], batch_size=200)


@pytest.fixture
def loaded(make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
           ) -> tuple[MySQLServer, PostgresServer]:
    replica, pg = make_mysql_db("ver"), make_pg_db("ver")
    generator.create_schema(replica, edge_cases=False)
    generator.fill_table(replica, "procedurelog", 5000)
    generator.fill_table(replica, "patplan", 900)
    load_steps.setup_target(pg)
    assert load_steps.load_table_once(replica, pg, "procedurelog", PROC).verification == "ok"
    assert load_steps.load_table_once(replica, pg, "patplan", PATPLAN).verification == "ok"
    return replica, pg


def _verify(replica: MySQLServer, pg: PostgresServer, table: str, config: TableConfig) -> verify.VerifyResult:
    my, pgc = pgload.mysql_connect(replica), pg.connect()
    try:
        return verify.verify_table(my, pgc, pgload.plan_table(pgload.describe_source(my, table), config))
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
    assert result.source_rows == 5000 and result.raw_rows == 4999
    by_range = {d.key_range: d for d in result.diffs}
    assert set(by_range) == {"ProcNum 0..999", "ProcNum 2000..2999", "ProcNum 4000..4999"}
    assert by_range["ProcNum 0..999"].missing_in_raw == ["17"]
    assert by_range["ProcNum 4000..4999"].changed == ["4321"]
    assert by_range["ProcNum 2000..2999"].changed == ["2500"]
    assert "missing in raw (e.g. 17)" in result.summary()


def test_rows_deleted_in_the_replica_are_stale_until_reconciled(loaded: tuple[MySQLServer, PostgresServer]) -> None:
    replica, pg = loaded
    mysql_exec(replica, "DELETE FROM `procedurelog` WHERE `ProcNum` IN (3, 1500, 1501, 4999)",
               "DELETE FROM `patplan` WHERE `PatNum` IN (10, 11, 500)")
    assert _verify(replica, pg, "procedurelog", PROC).status == "stale"
    assert _verify(replica, pg, "patplan", PATPLAN).status == "stale"
    my, pgc = pgload.mysql_connect(replica), pg.connect()
    try:
        for table, config, expected in (("procedurelog", PROC, 4), ("patplan", PATPLAN, 3)):
            plan = pgload.plan_table(pgload.describe_source(my, table), config)
            assert verify.reconcile_deletes(my, pgc, plan, chunk_rows=700) == expected
            assert verify.reconcile_deletes(my, pgc, plan, chunk_rows=700) == 0
    finally:
        my.close()
        pgc.close()
    assert _verify(replica, pg, "procedurelog", PROC).ok
    assert _verify(replica, pg, "patplan", PATPLAN).ok
    assert pg_query(pg, 'SELECT count(*) FROM raw.procedurelog')[0][0] == 4996


def test_reconcile_the_replica_against_the_source(make_mysql_db: Callable[[str], MySQLServer]) -> None:
    source, replica = make_mysql_db("rsrc"), make_mysql_db("rrep")
    for server in (source, replica):
        generator.create_schema(server, edge_cases=False)
        generator.fill_table(server, "patplan", 900)
    mysql_exec(source, "DELETE FROM `patplan` WHERE `PatNum` BETWEEN 100 AND 149")
    src, rep = pgload.mysql_connect(source), pgload.mysql_connect(replica)
    try:
        plan = pgload.plan_table(pgload.describe_source(rep, "patplan"), PATPLAN)
        assert verify.reconcile_deletes(src, rep, plan, target_dialect="mysql", chunk_rows=128) == 50
    finally:
        src.close()
        rep.close()
    conn = replica.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM `patplan`")
        assert cur.fetchone()[0] == 850
    conn.close()
