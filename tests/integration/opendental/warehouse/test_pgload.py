"""The load steps as plain functions (no Prefect) against the real MariaDB and PostgreSQL."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql import catalog, client, sessions
from clinicflow.opendental.chunks import keyset_max
from clinicflow.opendental.tables.config import ExtractionStrategy, TableConfig
from clinicflow.opendental.warehouse import full_load, load_errors, load_plan, load_steps, verify
from clinicflow_dev import generator
from tests.integration.opendental.warehouse.conftest import compare_rows, mysql_exec, pg_exec, pg_query

EDGE = TableConfig(
    primary_key=["EdgeCaseNum"],
    extraction_strategy=ExtractionStrategy.incremental,
    incremental_columns=["DateTStamp"],
    boolean_columns=["Flag"],
    batch_size=2,
)


@pytest.fixture(params=["client", "pymysql"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both readers of the encoded rows: the mariadb C client and pymysql (same bytes, same counts)."""
    monkeypatch.setenv(client.EXPORT_ENV, request.param)
    if request.param == "client" and client.client_binary() is None:
        pytest.skip("the mariadb command-line client is not installed")
    return request.param


@pytest.fixture
def dbs(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> tuple[MySQLServer, PostgresServer]:
    replica, pg = make_mysql_db("pgl"), make_pg_db("pgl")
    load_steps.setup_target(pg)
    return replica, pg


def test_every_value_class_arrives_under_the_mapping(dbs: tuple[MySQLServer, PostgresServer], transport: str) -> None:
    replica, pg = dbs
    generator.create_schema(replica, edge_cases=True)
    generator.seed(replica, rows={}, scale=0.0)  # only the edge-case rows
    outcome = load_steps.load_table_once(replica, pg, "edgecase", EDGE)
    assert outcome.status == "ok"
    assert outcome.mode == "full"
    assert outcome.verification == "ok"
    assert outcome.conversions == {
        "DateCol": {"zero_dates": 1},
        "DateTimeCol": {"zero_dates": 1},
        "TextMb3": {"nul_bytes": 1},
        "TextMb4": {"nul_bytes": 1},
    }
    assert compare_rows(replica, pg, "edgecase", EDGE) == 5
    # Empty string and NULL stay distinct; the strings 'NULL' and '\N' are strings.
    rows = dict(pg_query(pg, 'SELECT "Label", "TextMb3" FROM raw.edgecase'))
    assert rows["NULLs and empty strings"] == ""
    assert rows["string NULL and backslash N"] == "NULL"
    assert pg_query(pg, """SELECT "CharCol" FROM raw.edgecase WHERE "EdgeCaseNum" = 3""")[0][0] == "\\N"
    assert pg_query(pg, """SELECT count(*) FROM raw.edgecase WHERE "TextMb4" IS NULL""")[0][0] == 1
    # The source's primary key and indexes are recreated.
    assert (
        pg_query(pg, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'raw' AND tablename = 'edgecase'")[0][0] == 1
    )


def test_boolean_column_with_other_value_fails_naming_key_and_value(dbs: tuple[MySQLServer, PostgresServer]) -> None:
    replica, pg = dbs
    generator.seed(replica, rows={}, scale=0.0)
    mysql_exec(replica, "UPDATE `edgecase` SET `Flag` = 2 WHERE `EdgeCaseNum` = 3")
    with pytest.raises(load_errors.BooleanValueError, match=r"'edgecase'.*'Flag'.*EdgeCaseNum=3 holds 2"):
        load_steps.load_table_once(replica, pg, "edgecase", EDGE)
    # Nothing half-loaded is left behind, and raw was never touched.
    assert pg_query(pg, "SELECT to_regclass('raw.edgecase'), to_regclass('clinicflow_stage.edgecase')")[0] == (
        None,
        None,
    )


def test_incremental_merge_is_idempotent_and_counts_only_changes(dbs: tuple[MySQLServer, PostgresServer]) -> None:
    replica, pg = dbs
    generator.create_schema(replica, edge_cases=False)
    generator.fill_table(replica, "appointment", 3000)
    config = TableConfig(
        primary_key=["AptNum"],
        extraction_strategy=ExtractionStrategy.incremental,
        incremental_columns=["DateTStamp"],
        batch_size=400,
    )
    assert load_steps.load_table_once(replica, pg, "appointment", config).mode == "full"
    generator.apply_changes(replica, "appointment", inserts=500, updates=100)
    outcome = load_steps.load_table_once(replica, pg, "appointment", config)
    assert outcome.mode == "incremental"
    assert outcome.verification == "ok"
    assert outcome.rows_changed == 600
    assert outcome.rows >= 600
    # Reset the watermark: every row is read again, none is changed, none duplicated.
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute("UPDATE clinicflow.load_state SET watermark = NULL WHERE table_name = 'appointment'")
    conn.commit()
    conn.close()
    again = load_steps.load_table_once(replica, pg, "appointment", config)
    assert again.rows == 3500
    assert again.rows_changed == 0
    assert again.verification == "ok"
    assert pg_query(pg, 'SELECT count(*), count(DISTINCT "AptNum") FROM raw.appointment')[0] == (3500, 3500)


def test_doubles_and_floats_round_trip_and_checksum_equal(dbs: tuple[MySQLServer, PostgresServer]) -> None:
    replica, pg = dbs
    rng = random.Random(7)
    values: list[float] = [0.0, 1e15, 1e14, 1e-15, 1e-16, 5e-324, 1.7976931348623157e308, 0.1, -0.5, 2.0**60]
    while len(values) < 4000:
        pick = rng.random()
        if pick < 0.4:
            v = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if v != v or v in (float("inf"), float("-inf")):
                continue
        elif pick < 0.7:
            v = rng.uniform(-1, 1) * 10 ** rng.randint(-20, 20)
        else:
            v = round(rng.uniform(-1e5, 1e5), rng.randint(0, 4))
        values.append(v)
    mysql_exec(replica, "CREATE TABLE `nums` (`Id` int NOT NULL PRIMARY KEY, `D` double, `F` float)")
    conn = replica.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO `nums` VALUES (%s, %s, %s)",
            [(i, repr(v), repr(v) if abs(v) < 3.4e38 else None) for i, v in enumerate(values)],
        )
    conn.close()
    config = TableConfig(primary_key=["Id"], batch_size=1000)
    outcome = load_steps.load_table_once(replica, pg, "nums", config)
    assert outcome.verification == "ok", outcome.error
    compare_rows(replica, pg, "nums", config)
    # One changed last bit is caught by the checksum and named by key.
    mysql_exec(replica, "UPDATE `nums` SET `D` = 0.30000000000000004 WHERE `Id` = 1234")
    pg_query_exec(pg, 'UPDATE raw.nums SET "D" = 0.3 WHERE "Id" = 1234')
    my, pgc = sessions.raw_connection(replica), pg.connect()
    try:
        plan = load_plan.plan_load(catalog.read_table(my, "nums"), config)
        result = verify.verify_table(my, pgc, plan)
    finally:
        my.close()
        pgc.close()
    assert result.status == "differs", result.summary()
    assert result.diffs[0].changed == ["1234"], result.summary()
    assert "Id [1200..1300)" in result.summary()  # the ~100-row range holding the key


def pg_query_exec(pg: PostgresServer, sql: str) -> None:
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.commit()
    finally:
        conn.close()


def test_in_stream_counts_match_the_data(dbs: tuple[MySQLServer, PostgresServer], transport: str) -> None:
    """Zero dates and NUL bytes counted by the encoding query equal what SQL counts, full and incremental."""
    replica, pg = dbs
    mysql_exec(
        replica,
        "CREATE TABLE `odd` (`Id` bigint NOT NULL PRIMARY KEY, `D` date NOT NULL, `T` datetime NULL, "
        "`S` varchar(40) NULL, `Stamp` datetime NOT NULL, `L` longtext NULL)",
        "INSERT INTO `odd` SELECT seq, "
        "IF(seq % 7 = 0, '0000-00-00', IF(seq % 11 = 0, '2020-00-05', '2020-01-01')), "
        "IF(seq % 5 = 0, NULL, IF(seq % 13 = 0, '0000-00-00 00:00:00', '2021-02-03 04:05:06')), "
        "IF(seq % 3 = 0, CONCAT('a', CHAR(0), 'b', REPEAT(CHAR(0), seq % 4)), IF(seq % 17 = 0, NULL, 'plain')), "
        "'2024-01-01 00:00:00' + INTERVAL seq SECOND, "
        # A large-value column (streamed, hashed by the server): NULs removed, counted and verified too.
        "IF(seq % 4 = 0, CONCAT('é', CHAR(0), REPEAT('z', seq)), IF(seq % 19 = 0, NULL, 'long')) FROM seq_1_to_3000",
    )
    conn = replica.connect()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT SUM(MONTH(`D`) = 0 OR DAY(`D`) = 0), SUM(`T` IS NOT NULL AND MONTH(`T`) = 0), "
            "SUM(LENGTH(`S`) - LENGTH(REPLACE(`S`, CHAR(0), ''))), "
            "SUM(LENGTH(`L`) - LENGTH(REPLACE(`L`, CHAR(0), '')))  FROM `odd`"
        )
        zero_d, zero_t, nuls, long_nuls = (int(v) for v in cur.fetchone())
    conn.close()
    expected = {
        "D": {"zero_dates": zero_d},
        "T": {"zero_dates": zero_t},
        "S": {"nul_bytes": nuls},
        "L": {"nul_bytes": long_nuls},
    }
    full = TableConfig(primary_key=["Id"], batch_size=500)
    loaded = load_steps.load_table_once(replica, pg, "odd", full)
    assert loaded.conversions == expected
    assert loaded.verification == "ok"
    incremental = TableConfig(
        primary_key=["Id"],
        extraction_strategy=ExtractionStrategy.incremental,
        incremental_columns=["Stamp"],
        batch_size=500,
    )
    load_steps.load_table_once(replica, pg, "odd", incremental.model_copy(update={"batch_size": 500}))
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute("UPDATE clinicflow.load_state SET watermark = NULL WHERE table_name = 'odd'")
    conn.commit()
    conn.close()
    outcome = load_steps.load_table_once(replica, pg, "odd", incremental)
    assert outcome.mode == "incremental"
    assert outcome.conversions == expected
    assert outcome.verification == "ok"
    assert pg_query(pg, 'SELECT count(*) FROM raw.odd WHERE "D" IS NULL')[0][0] == zero_d


@pytest.mark.parametrize("engine", ["InnoDB", "MyISAM"])
def test_full_load_reads_key_ranges_from_a_clustered_table_and_one_scan_from_myisam(
    dbs: tuple[MySQLServer, PostgresServer], engine: str
) -> None:
    replica, pg = dbs
    mysql_exec(
        replica,
        f"CREATE TABLE `eng` (`Id` int NOT NULL PRIMARY KEY, `A` varchar(20) NULL, `D` date NOT NULL) ENGINE={engine}",
        "INSERT INTO `eng` SELECT seq, IF(seq % 9 = 0, NULL, CONCAT('v', seq, IF(seq % 4 = 0, CHAR(9), ''))), "
        "IF(seq % 7 = 0, '0000-00-00', '2020-01-01') FROM seq_1_to_2500",
    )
    config = TableConfig(primary_key=["Id"], batch_size=1000)
    prepared = load_steps.prepare_load(replica, pg, "eng", config)
    assert isinstance(prepared, load_steps.FullLoad)
    load_steps.drop_stage(pg, prepared)
    expected = ["start..1001", "1001..2001", "2001..end"] if engine == "InnoDB" else ["all"]
    assert [chunk.label for chunk in prepared.chunks] == expected
    conn = replica.connect()
    try:
        assert catalog.read_table(conn, "eng").engine == engine
    finally:
        conn.close()
    outcome = load_steps.load_table_once(replica, pg, "eng", config)
    assert outcome.status == "ok", outcome.error
    assert outcome.rows == 2500, outcome.error
    assert outcome.verification == "ok", outcome.error
    assert outcome.conversions == {"D": {"zero_dates": 2500 // 7}}
    assert compare_rows(replica, pg, "eng", config) == 2500


def test_a_value_postgres_rejects_fails_the_table_without_showing_the_value(
    dbs: tuple[MySQLServer, PostgresServer], transport: str
) -> None:
    replica, pg = dbs
    mysql_exec(
        replica,
        "CREATE TABLE `bad` (`Id` int NOT NULL PRIMARY KEY, `Visit` date NOT NULL)",
        "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'",
        "INSERT INTO `bad` VALUES (1, '2024-02-28'), (2, '2024-02-30')",
    )
    with pytest.raises(load_errors.LoadError) as caught:
        load_steps.load_table_once(replica, pg, "bad", TableConfig(primary_key=["Id"]))
    message = str(caught.value)
    assert "'bad'" in message, message
    assert "column Visit" in message, message
    assert "line 2" in message, message
    assert "2024-02-30" not in message


def test_keyset_max_is_the_last_row_in_keyset_order(dbs: tuple[MySQLServer, PostgresServer]) -> None:
    replica, _ = dbs
    mysql_exec(
        replica,
        "CREATE TABLE `ks` (`Id` int NOT NULL PRIMARY KEY, `Stamp` datetime NULL,"
        " `Grp` varchar(5) NULL, KEY (`Stamp`))",
    )
    conn = replica.connect(autocommit=True)
    try:
        assert keyset_max(conn, "ks", ["Stamp", "Id"]) is None  # empty table
        mysql_exec(replica, "INSERT INTO `ks` VALUES (1, NULL, NULL), (2, NULL, 'b')")
        assert keyset_max(conn, "ks", ["Stamp", "Id"]) == (None, 2)  # only NULL stamps: NULL is the lowest
        mysql_exec(
            replica,
            "INSERT INTO `ks` VALUES (3, '2024-05-01 10:00:00', 'a'), (9, '2024-05-02 08:00:00', 'a'),"
            " (4, '2024-05-02 08:00:00', 'c'), (7, '2024-05-02 08:00:00', NULL),"
            " (8, '2024-04-30 00:00:00', 'z')",
        )
        for columns in (["Stamp", "Id"], ["Grp", "Id"], ["Grp", "Stamp", "Id"], ["Id"], ["Stamp", "Grp", "Id"]):
            with conn.cursor() as cur:
                order = ", ".join(f"`{c}` DESC" for c in columns)
                cur.execute(f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM `ks` ORDER BY {order} LIMIT 1")
                expected = cur.fetchone()
            assert keyset_max(conn, "ks", columns) == expected, columns
        # The watermark a full load records is that row, as text.
        plan = load_plan.plan_load(
            catalog.read_table(conn, "ks"),
            TableConfig(
                primary_key=["Id"], extraction_strategy=ExtractionStrategy.incremental, incremental_columns=["Stamp"]
            ),
        )
        assert full_load.current_keyset_max(conn, plan) == ("2024-05-02 08:00:00", "9")
    finally:
        conn.close()


def test_key_and_indexes_are_built_side_by_side_and_a_duplicate_key_fails_only_the_load(
    dbs: tuple[MySQLServer, PostgresServer],
) -> None:
    replica, pg = dbs
    mysql_exec(
        replica,
        "CREATE TABLE `multi` (`Id` int NOT NULL PRIMARY KEY, `A` int NOT NULL,"
        " `B` varchar(40) NOT NULL, `C` date NOT NULL, `Code` varchar(10) NOT NULL,"
        " KEY `ia` (`A`), KEY `ib` (`B`(8)),"
        " KEY `ic` (`C`, `A`), UNIQUE KEY `uc` (`Code`))",
        "INSERT INTO `multi` SELECT seq, seq % 17, CONCAT('name ', seq % 101),"
        " '2024-01-01' + INTERVAL seq % 300 DAY, CONCAT('C', seq) FROM seq_1_to_5000",
    )
    config = TableConfig(primary_key=["Id"], batch_size=1000)
    outcome = load_steps.load_table_once(replica, pg, "multi", config)
    assert outcome.status == "ok", outcome.error
    assert outcome.rows == 5000, outcome.error
    assert outcome.verification == "ok", outcome.error
    indexes = dict(
        pg_query(pg, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'raw' AND tablename = 'multi'")
    )
    assert sorted(indexes) == ["multi__ia", "multi__ib", "multi__ic", "multi__uc", "multi_pkey"]
    assert "UNIQUE" in indexes["multi__uc"]
    assert "SUBSTRING" in indexes["multi__ib"].upper()
    assert pg_query(pg, "SELECT conname, contype FROM pg_constraint WHERE conrelid = 'raw.multi'::regclass") == [
        ("multi_pkey", "p")
    ]
    # A key from tables.yml (the source has none) that the rows stop honouring fails that load
    # with the key named; raw keeps the previous load and no staging table is left.
    mysql_exec(
        replica,
        "CREATE TABLE `dup` (`Id` int NOT NULL, `A` int NOT NULL, KEY `ia` (`A`))",
        "INSERT INTO `dup` SELECT seq, seq % 17 FROM seq_1_to_3000",
    )
    keyed = TableConfig(primary_key=["Id"], batch_size=1000)
    assert load_steps.load_table_once(replica, pg, "dup", keyed).status == "ok"
    mysql_exec(replica, "INSERT INTO `dup` VALUES (7, 99)")
    with pytest.raises(
        load_errors.LoadError, match=r"'dup': the primary key is not unique.*\(\"Id\"\)=\(7\) is duplicated"
    ):
        load_steps.load_table_once(replica, pg, "dup", keyed, load_steps.LoadOptions(full_refresh=True))
    assert pg_query(pg, "SELECT count(*) FROM raw.dup")[0][0] == 3000
    assert pg_query(pg, "SELECT to_regclass('clinicflow_stage.dup')")[0][0] is None
    # A unique index MySQL honours can break in PostgreSQL when NUL bytes are removed
    # ('zq7' and 'zq7\0'): that load fails naming the index, never the values.
    mysql_exec(
        replica,
        "CREATE TABLE `uniq` (`Id` int NOT NULL PRIMARY KEY, `Code` varchar(10) NOT NULL, UNIQUE KEY `uc` (`Code`))",
        "INSERT INTO `uniq` VALUES (1, 'zq7'), (2, CONCAT('zq7', CHAR(0)))",
    )
    with pytest.raises(
        load_errors.LoadError,
        match=r"'uniq': a unique index is not unique in PostgreSQL "
        r"\(\"uniq__uc\"\); values withheld",
    ) as caught:
        load_steps.load_table_once(replica, pg, "uniq", TableConfig(primary_key=["Id"]))
    assert "zq7" not in str(caught.value)


def test_latin1_text_arrives_as_utf8_escaped_and_counted(
    dbs: tuple[MySQLServer, PostgresServer], transport: str
) -> None:
    replica, pg = dbs
    mysql_exec(
        replica,
        "CREATE TABLE `l1` (`Id` int NOT NULL PRIMARY KEY, `Note` varchar(40) CHARACTER SET latin1 NULL)",
        # CHAR(n USING utf8mb4): a bare CHAR(n) is binary and would make CONCAT store UTF-8 bytes as latin1.
        "INSERT INTO `l1` VALUES (1, 'café'), (2, CONCAT('a\\\\b', CHAR(9 USING utf8mb4), 'c',"
        " CHAR(10 USING utf8mb4), 'd', CHAR(13 USING utf8mb4), 'é')), (3, ''), (4, NULL),"
        " (5, CONCAT('x', CHAR(0 USING utf8mb4), 'ÿ')), (6, 'plain')",
    )
    outcome = load_steps.load_table_once(replica, pg, "l1", TableConfig(primary_key=["Id"]))
    assert outcome.status == "ok", outcome.error
    assert outcome.verification == "ok", outcome.error
    assert outcome.conversions == {"Note": {"nul_bytes": 1}}
    assert pg_query(pg, 'SELECT "Id", "Note" FROM raw.l1 ORDER BY 1') == [
        (1, "café"),
        (2, "a\\b\tc\nd\ré"),
        (3, ""),
        (4, None),
        (5, "xÿ"),
        (6, "plain"),
    ]


def test_swap_moves_the_replaced_table_aside_and_drops_it_after_the_commit(
    dbs: tuple[MySQLServer, PostgresServer],
) -> None:
    replica, pg = dbs
    mysql_exec(
        replica,
        "CREATE TABLE `swapme` (`Id` int NOT NULL PRIMARY KEY, `A` int NOT NULL, KEY `ia` (`A`))",
        "INSERT INTO `swapme` SELECT seq, seq % 7 FROM seq_1_to_2000",
    )
    config = TableConfig(primary_key=["Id"], batch_size=500)
    full = load_steps.LoadOptions(full_refresh=True)
    assert load_steps.load_table_once(replica, pg, "swapme", config).status == "ok"
    replaced = "clinicflow_stage_replaced.swapme"

    # The steps one by one: after the swap's commit the old table waits aside, with its own
    # index names (no clash with the new table's), until it is dropped.
    mysql_exec(replica, "INSERT INTO `swapme` VALUES (2001, 1)")
    prepared = load_steps.prepare_load(replica, pg, "swapme", config, full)
    stats = [load_steps.load_chunk(replica, pg, prepared, chunk) for chunk in prepared.chunks]
    full_load.build_stage_indexes(pg.connect, prepared.plan)
    conn = pg.connect()
    try:
        assert full_load.finish_full_load(conn, prepared.plan, watermark=None, fingerprint=None) is True
    finally:
        conn.close()
    assert sum(s.rows for s in stats) == 2001
    assert pg_query(pg, "SELECT count(*) FROM raw.swapme")[0][0] == 2001
    assert pg_query(pg, f"SELECT count(*) FROM {replaced}")[0][0] == 2000
    assert sorted(r[0] for r in pg_query(pg, "SELECT indexname FROM pg_indexes WHERE tablename = 'swapme'")) == [
        "swapme__ia",
        "swapme__ia",
        "swapme_pkey",
        "swapme_pkey",
    ]
    full_load.drop_table(pg.connect, full_load.replaced_target(prepared.plan))
    assert pg_query(pg, "SELECT to_regclass(%s)", (replaced,))[0][0] is None

    # A crash between the swap and the drop leaves the copy aside: the next load removes it.
    pg_exec(pg, f"CREATE TABLE {replaced} (x int)")
    outcome = load_steps.load_table_once(replica, pg, "swapme", config, full)
    assert outcome.status == "ok", outcome.error
    assert outcome.rows == 2001, outcome.error
    assert outcome.verification == "ok", outcome.error
    assert pg_query(pg, "SELECT to_regclass(%s)", (replaced,))[0][0] is None
    # ... and so does the next run's setup, whatever mode the table is loaded in next.
    pg_exec(pg, f"CREATE TABLE {replaced} (x int)", "CREATE TABLE clinicflow_stage_replaced.other (x int)")
    load_steps.setup_target(pg)
    assert pg_query(pg, "SELECT count(*) FROM pg_tables WHERE schemaname = 'clinicflow_stage_replaced'")[0][0] == 0

    # A view on raw.swapme would follow a moved table: the swap refuses first, naming the
    # reason; raw keeps the last load, the view its table, and nothing is left aside.
    pg_exec(pg, "CREATE VIEW public.swapme_view AS SELECT * FROM raw.swapme")
    mysql_exec(replica, "INSERT INTO `swapme` VALUES (2002, 2)")
    with pytest.raises(
        load_errors.LoadError, match=r"'swapme': cannot replace raw.swapme: other objects \(views\) depend"
    ):
        load_steps.load_table_once(replica, pg, "swapme", config, full)
    assert pg_query(pg, "SELECT count(*) FROM public.swapme_view")[0][0] == 2001
    assert pg_query(pg, "SELECT to_regclass('clinicflow_stage.swapme'), to_regclass(%s)", (replaced,))[0] == (
        None,
        None,
    )
