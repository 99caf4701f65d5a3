"""Server-side bulk fill, fixed timestamps, deterministic changes, the wide source (real MariaDB)."""

from __future__ import annotations

from datetime import datetime

import pytest

from blocks.databases import MySQLServer
from clinicflow_dev import generator

from .conftest import checksums, query


def _max(server: MySQLServer, table: str, column: str) -> object:
    return query(server, f"SELECT MAX(`{column}`) FROM `{table}`")[0][0]


def test_bulk_fill_200k_rows_server_side(gen_db: MySQLServer) -> None:
    generator.create_schema(gen_db, edge_cases=False)
    assert generator.fill_table(gen_db, "procedurelog", 200_000) == 200_000
    count, low, high, distinct_stamps, distinct_patients = query(
        gen_db,
        "SELECT COUNT(*), MIN(ProcNum), MAX(ProcNum), COUNT(DISTINCT DateTStamp), COUNT(DISTINCT PatNum) "
        "FROM procedurelog",
    )[0]
    assert (count, low, high) == (200_000, 1, 200_000)
    assert distinct_stamps > 100_000
    assert distinct_patients == 2000  # spread like real data, keys within patient
    # Appending continues after the current maximum key.
    assert generator.fill_table(gen_db, "procedurelog", 10) == 10
    assert _max(gen_db, "procedurelog", "ProcNum") == 200_010


def test_fixed_timestamp_gives_every_row_one_change_value(gen_db: MySQLServer) -> None:
    generator.create_schema(gen_db, edge_cases=False)
    generator.fill_table(gen_db, "procedurelog", 30_000, fixed_timestamp="2024-05-05 10:00:00")
    generator.fill_table(gen_db, "payment", 50, fixed_timestamp="2024-05-06T11:00:00")
    assert query(gen_db, "SELECT COUNT(*), COUNT(DISTINCT DateTStamp), MIN(DateTStamp) FROM procedurelog") == [
        (30_000, 1, datetime(2024, 5, 5, 10, 0))
    ]
    assert query(gen_db, "SELECT COUNT(DISTINCT SecDateTEdit), MIN(SecDateTEdit) FROM payment") == [
        (1, datetime(2024, 5, 6, 11, 0))
    ]


@pytest.mark.parametrize(
    ("table", "kwargs", "message"),
    [
        ("procedurelog", {"fixed_timestamp": "yesterday"}, "fixed_timestamp 'yesterday'"),
        ("procedurelog", {"fixed_timestamp": "2040-01-01 00:00:00"}, "outside the TIMESTAMP range"),
        ("procedurelog", {"fixed_timestamp": "2024-01-01 00:00:00'; DROP TABLE patient; --"}, "is not"),
        ("securitylog", {"fixed_timestamp": "2024-01-01 00:00:00"}, "'securitylog' has no change column"),
        ("nosuchtable", {}, "no spec for table 'nosuchtable'"),
    ],
)
def test_fill_table_rejects_bad_input_by_name(gen_db: MySQLServer, table: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        generator.fill_table(gen_db, table, 5, **kwargs)


def test_seed_rejects_unknown_tables_and_negative_counts(gen_db: MySQLServer) -> None:
    with pytest.raises(ValueError, match=r"unknown table.*patients"):
        generator.seed(gen_db, rows={"patients": 5})
    with pytest.raises(ValueError, match="must not be negative"):
        generator.seed(gen_db, scale=-1)


CHANGED_TABLES = {
    "procedurelog": "DateTStamp",
    "paysplit": "SecDateTEdit",
    "claimproc": "SecDateTEdit",
    "commlog": "DateTStamp",
}


@pytest.fixture(scope="module")
def changes_db(module_db: MySQLServer) -> MySQLServer:
    """Seeded once; each test below changes only its own table."""
    generator.seed(module_db, rows=dict.fromkeys(CHANGED_TABLES, 300), scale=0, edge_cases=False)
    return module_db


@pytest.mark.parametrize(("table", "change_column"), list(CHANGED_TABLES.items()))
def test_apply_changes_moves_the_change_column(changes_db: MySQLServer, table: str, change_column: str) -> None:
    gen_db = changes_db
    key = generator.table_spec(table).primary_key[0]
    before = {row[0]: row[1:] for row in query(gen_db, f"SELECT * FROM `{table}`")}
    old_max = _max(gen_db, table, change_column)

    first = generator.apply_changes(gen_db, table, inserts=7, updates=11, deletes=5)
    # Run again at once (same second): the second batch must still be strictly later than the first.
    first_max = _max(gen_db, table, change_column)
    second = generator.apply_changes(gen_db, table, updates=3)

    assert len(first["inserted"]) == 7
    assert len(first["updated"]) == 11
    assert len(first["deleted"]) == 5
    assert not set(first["updated"]) & set(first["deleted"])
    assert min(first["inserted"]) == max(before) + 1
    after = {row[0]: row[1:] for row in query(gen_db, f"SELECT * FROM `{table}`")}
    assert not set(first["deleted"]) & set(after)
    assert set(first["inserted"]) <= set(after)
    stamps = dict(query(gen_db, f"SELECT `{key}`, `{change_column}` FROM `{table}`"))
    for changed in first["updated"] + first["inserted"]:
        assert stamps[changed] > old_max, changed
    for changed in first["updated"]:
        if changed not in second["updated"]:
            assert after[changed] != before[changed], changed  # a real change, not only a report
    for changed in second["updated"]:
        assert stamps[changed] > first_max, changed
    untouched = set(before) - set(first["updated"]) - set(first["deleted"]) - set(second["updated"])
    assert all(after[k] == before[k] for k in untouched)


def test_apply_changes_without_change_column_and_bad_tables(gen_db: MySQLServer) -> None:
    generator.seed(gen_db, rows={"securitylog": 100}, scale=0, edge_cases=False)
    changes = generator.apply_changes(gen_db, "securitylog", inserts=10, updates=2)
    assert changes["inserted"] == list(range(101, 111))  # securitylog's watermark is its key
    assert query(gen_db, "SELECT COUNT(*) FROM securitylog WHERE LogText LIKE 'upd7-%'") == [(2,)]
    with pytest.raises(ValueError, match="'patplan' needs a single-column key"):
        generator.apply_changes(gen_db, "patplan", updates=1)
    with pytest.raises(ValueError, match="no spec for table 'nosuch'"):
        generator.apply_changes(gen_db, "nosuch", inserts=1)


def test_apply_changes_is_deterministic(make_mysql_db) -> None:
    servers = [make_mysql_db("gen_a"), make_mysql_db("gen_b")]
    results = []
    for server in servers:
        generator.seed(server, rows={"patient": 200}, scale=0, edge_cases=False)
        results.append(generator.apply_changes(server, "patient", inserts=5, updates=9, deletes=4, seed=3))
    assert results[0] == results[1]
    # The change column carries wall-clock time; every other column is identical.
    columns = ", ".join(f"`{name}`" for name, _, _ in generator.table_spec("patient").columns if name != "DateTStamp")
    rows = [query(server, f"SELECT {columns} FROM patient ORDER BY PatNum") for server in servers]
    assert rows[0] == rows[1]


def test_procedurelog_like_for_benches(gen_db: MySQLServer) -> None:
    assert generator.create_procedurelog_like(gen_db, 2_500, table="procedurelog_bench") == 2_500
    columns = query(
        gen_db,
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'procedurelog_bench'",
        (gen_db.database,),
    )
    assert columns == [(36,)]
    generator.seed(gen_db, rows={"procedurelog": 2_500}, scale=0, edge_cases=False)
    # Same rows as the generator's own procedurelog.
    assert (
        checksums(gen_db, ["procedurelog_bench"])["procedurelog_bench"]
        == checksums(gen_db, ["procedurelog"])["procedurelog"]
    )


def test_wide_source_has_450_tables(gen_db: MySQLServer) -> None:
    counts = generator.create_wide_source(gen_db)
    assert len(counts) == 450
    tables = query(
        gen_db,
        "SELECT COUNT(*), SUM(ENGINE = 'MyISAM') FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (gen_db.database,),
    )
    assert tables == [(450, 450)]
    tiny = [n for n in counts.values() if n <= 23]
    assert len(tiny) > 400  # most of OpenDental's tables are tiny
    assert counts["securitylog"] == max(counts.values())
