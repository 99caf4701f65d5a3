"""Every MySQL/MariaDB type and value class, and four nights of schema changes and watermark traps.

A seed night and four mutation nights run the default nightly (no flags); after each, the replica
and ``raw`` equal the source value by value under docs/loading.md's mapping: TIMESTAMPs as UTC
instants, JSON parsed with exact numbers, floats bit for bit, blobs by sha256, text by code points,
keyless tables as multisets.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql import catalog, sessions
from clinicflow.core.sql import quote_ident, quote_qualified
from clinicflow.opendental.tables import config_drift
from clinicflow.opendental.tables.config import load_tables_config
from clinicflow.opendental.tables.typemap import Kind
from clinicflow.opendental.warehouse import load_plan
from tests.conftest import mysql_query
from tests.integration.opendental.warehouse.conftest import (
    _set_env,
    expected_value,
    json_value,
    mysql_exec,
    pg_exec,
    pg_query,
)

BIG_JSON = "[" + ",".join(str(2**70 + i) for i in range(60_000)) + "]"  # about 1.5 MB
DEEP_JSON = "[" * 30 + '{"n": 18446744073709551617}' + "]" * 30
BIG_BLOB_HEX = (bytes(range(256)) * 6000).hex()  # 1.5 MB

ZOO = """CREATE TABLE `zoo` (
 `Id` int NOT NULL PRIMARY KEY,
 `B1` bit(1) NULL, `B64` bit(64) NULL,
 `St` set('a','b','c') NULL,
 `En` enum('','x','X') CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
 `Dm` decimal(65,30) NULL, `F` float NULL, `D` double NULL, `Y` year NULL,
 `T6` time(6) NULL, `Dt6` datetime(6) NULL, `Ts6` timestamp(6) NULL DEFAULT NULL, `Ts` timestamp NULL DEFAULT NULL,
 `U4` varchar(20) CHARACTER SET utf8mb4 NULL, `U3` varchar(20) CHARACTER SET utf8mb3 NULL, `Ch` char(10) NULL,
 `Js` json NULL, `Bl` longblob NULL, `G` point NULL, `Gg` geometry NULL,
 `Gs` int AS (`Id` * 2) STORED, `Gv` varchar(30) AS (CONCAT('v', `Id`)) VIRTUAL,
 `Inv` int NULL INVISIBLE, `Uu` uuid NULL, `I6` inet6 NULL,
 `DateTStamp` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp()
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

ZOO_COLUMNS = "`Id`,`B1`,`B64`,`St`,`En`,`Dm`,`F`,`D`,`Y`,`T6`,`Dt6`,`Ts6`,`Ts`,`U4`,`U3`,`Ch`,`Js`,`Bl`,`G`,`Gg`,`Inv`"
MARIADB_TYPES = (
    "UPDATE `zoo` SET `Uu` = '00000000-0000-0000-0000-0000000000ff', `I6` = '::ffff:1.2.3.4' WHERE `Id` = 1",
    "UPDATE `zoo` SET `Uu` = UUID(), `I6` = '2001:db8::1' WHERE `Id` = 2",
)
ZOO_ROWS = [
    f"(1,b'1',b'{'1' * 64}','a,c','','{'9' * 35}.{'9' * 30}',3.40282e38,1.7976931348623157e308,1901,"
    "'-838:59:59.000000','9999-12-31 23:59:59.999999','2038-01-19 03:14:07.999999','2024-03-31 00:59:59',"
    "'😀𠀀z','é€','ab  ','{\"a\":[1,2]}',X'',ST_GeomFromText('POINT(1.5 -2.25)'),"
    "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'),7)",
    f"(2,b'0',b'0','','x','-{'9' * 35}.{'9' * 30}',1.17549435e-38,2.2250738585072014e-308,2155,"
    "'838:59:59.999999','1000-01-01 00:00:00.000001','1970-01-01 00:00:01.000000','2024-03-31 01:00:00',"
    "'','',' ','18446744073709551617',NULL,NULL,NULL,NULL)",
    "(3,NULL,NULL,'a,b,c','X',0.000000000000000000000000000001,-0e0,-0e0,0,'00:00:00.5',"
    "'2024-10-27 02:30:00','2024-10-27 01:30:00.5','2024-10-27 00:30:00',"
    "'tab\\there',NULL,NULL,'[9007199254740993, -0.0, 1.5e300]',X'00ff00',ST_GeomFromText('POINT(0 0)'),NULL,NULL)",
    f"(4,NULL,NULL,NULL,NULL,NULL,-3.40282e38,5e-324,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'{DEEP_JSON}',"
    f"X'{BIG_BLOB_HEX}',NULL,NULL,NULL)",
    f"(5,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'{BIG_JSON}',NULL,NULL,NULL,NULL)",
]


def _seed(source: MySQLServer) -> None:
    mysql_exec(
        source,
        "SET NAMES utf8mb4",
        "SET time_zone = '+00:00'",
        ZOO,
        f"INSERT INTO `zoo` ({ZOO_COLUMNS}) VALUES {', '.join(ZOO_ROWS)}",
        # A workstation in Europe/Berlin writes the same wall clock twice in the autumn fold:
        # once in summer time (+02:00), once in winter time (+01:00): two instants.
        "SET time_zone = '+02:00'",
        f"INSERT INTO `zoo` ({ZOO_COLUMNS}) VALUES (6,{','.join(['NULL'] * 11)},'2024-10-27 02:30:00',"
        + ",".join(["NULL"] * 8)
        + ")",
        "SET time_zone = '+01:00'",
        f"INSERT INTO `zoo` ({ZOO_COLUMNS}) VALUES (7,{','.join(['NULL'] * 11)},'2024-10-27 02:30:00',"
        + ",".join(["NULL"] * 8)
        + ")",
        "SET time_zone = '+00:00'",
        *MARIADB_TYPES,
        # MyISAM, keyed, incremental.
        "CREATE TABLE `myi` (`Id` int NOT NULL PRIMARY KEY, `Note` varchar(30) NULL, `DateTStamp` timestamp NOT NULL "
        "DEFAULT current_timestamp() ON UPDATE current_timestamp()) ENGINE=MyISAM",
        "INSERT INTO `myi` (`Id`, `Note`) SELECT seq, CONCAT('n', seq) FROM seq_1_to_300",
        # A UNIQUE key and no primary key; a multiset with no key at all.
        "CREATE TABLE `uk` (`Code` varchar(10) NOT NULL, `Val` int NULL, UNIQUE KEY `code` (`Code`)) ENGINE=InnoDB",
        "INSERT INTO `uk` VALUES ('a', 1), ('b', NULL), ('c', 3)",
        "CREATE TABLE `multi` (`A` int NULL, `B` varchar(5) NULL) ENGINE=InnoDB",
        "INSERT INTO `multi` VALUES (1,'x'),(1,'x'),(1,'x'),(2,NULL),(2,NULL),(NULL,NULL)",
        # A key under a case-insensitive collation.
        "CREATE TABLE `ci` (`Code` varchar(10) NOT NULL PRIMARY KEY, `Val` varchar(10) NULL, `DateTStamp` timestamp "
        "NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp()) ENGINE=InnoDB "
        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
        "INSERT INTO `ci` (`Code`, `Val`) VALUES ('abc', 'one'), ('déf', 'two'), ('xyz', 'three')",
        # The table whose schema evolves, with a stamp and a large share of rows.
        "CREATE TABLE `evo` (`Id` int NOT NULL PRIMARY KEY, `Qty` int NULL, `Name` varchar(50) NULL, "
        "`Amount` decimal(10,2) NULL, `Gone` varchar(10) NULL, `OldName` varchar(10) NULL, "
        "`Txt` varchar(20) CHARACTER SET utf8mb3 NULL, `Bl` blob NULL, "
        "`DateTStamp` datetime NOT NULL DEFAULT '2024-01-01 00:00:00') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "INSERT INTO `evo` (`Id`, `Qty`, `Name`, `Amount`, `Gone`, `OldName`, `Txt`, `Bl`) "
        "SELECT seq, seq, CONCAT('name', seq), seq / 4, 'g', CONCAT('o', seq), 'é', "
        "IF(seq % 3 = 0, X'', IF(seq % 3 = 1, NULL, X'0102')) FROM seq_1_to_500",
    )


def _tables_yml() -> dict[str, Any]:
    def incremental(pk: list[str]) -> dict[str, Any]:
        return {
            "primary_key": pk,
            "extraction_strategy": "incremental",
            "incremental_columns": ["DateTStamp"],
            "batch_size": 100,
        }

    return {
        "version": 1,
        "tables": {
            "zoo": incremental(["Id"]),
            "myi": incremental(["Id"]),
            "ci": incremental(["Code"]),
            "evo": incremental(["Id"]),
            "uk": {"primary_key": []},
            "multi": {"primary_key": []},
        },
    }


def _night_1(source: MySQLServer) -> None:
    """Widen in place, then values that need the width; charset widened; blobs changed in place; a new table."""
    mysql_exec(
        source,
        "SET NAMES utf8mb4",
        "ALTER TABLE `evo` MODIFY `Qty` bigint NULL, MODIFY `Name` varchar(255) NULL, "
        "MODIFY `Amount` decimal(14,4) NULL, MODIFY `Txt` varchar(20) CHARACTER SET utf8mb4 NULL",
        "UPDATE `evo` SET `Qty` = 9000000000 + `Id`, `Name` = REPEAT('w', 200), `Amount` = 1234567890.1234, "
        "`Txt` = '😀', `DateTStamp` = '2024-02-01 00:00:00' WHERE `Id` <= 20",
        # Same-length blob change and '' <-> NULL, stamp untouched.
        "UPDATE `evo` SET `Bl` = X'0201' WHERE `Bl` = X'0102' AND `Id` <= 100",
        "UPDATE `evo` SET `Bl` = IF(`Bl` IS NULL, X'', NULL) WHERE `Id` BETWEEN 101 AND 200 AND `Bl` <> X'0102'",
        "UPDATE `evo` SET `Bl` = NULL WHERE `Id` BETWEEN 101 AND 200 AND `Bl` = X''",
        "INSERT INTO `multi` VALUES (1,'x'),(NULL,NULL)",
        "DELETE FROM `multi` WHERE `A` = 2 LIMIT 1",
        "CREATE TABLE `brandnew` (`Id` int PRIMARY KEY)",
    )


def _night_2(source: MySQLServer) -> None:
    """A column dropped, a column renamed (stamps untouched), keys reused, a key updated to a collation-equal value."""
    mysql_exec(
        source,
        "ALTER TABLE `evo` DROP COLUMN `Gone`",
        "ALTER TABLE `evo` CHANGE `OldName` `NewName` varchar(10) NULL",
        "DELETE FROM `zoo` WHERE `Id` IN (2, 3)",
        "INSERT INTO `zoo` (`Id`, `U4`, `D`, `DateTStamp`) VALUES (2, 'reused', 2.5, '2020-01-01 00:00:00'), "
        "(3, 'again', -1e-300, '2020-01-01 00:00:00')",
        "UPDATE `ci` SET `Code` = 'ABC', `DateTStamp` = `DateTStamp` WHERE `Code` = 'abc'",
        "UPDATE `ci` SET `Code` = 'DEF', `Val` = 'changed' WHERE `Code` = 'déf'",
        "UPDATE `uk` SET `Val` = 30 WHERE `Code` = 'c'",
        # A workstation with a skewed clock stamps a row years ahead.
        "UPDATE `evo` SET `Name` = 'from the future', `DateTStamp` = '2031-01-01 00:00:00' WHERE `Id` = 5",
    )


def _night_3(source: MySQLServer) -> None:
    """TRUNCATE and refill; ordinary changes stamped below last night's future stamp."""
    mysql_exec(
        source,
        "TRUNCATE TABLE `myi`",
        "INSERT INTO `myi` (`Id`, `Note`, `DateTStamp`) SELECT seq, CONCAT('refill', seq), '2023-05-05 00:00:00' "
        "FROM seq_1_to_250",
        "UPDATE `evo` SET `Name` = 'normal change', `DateTStamp` = NOW() WHERE `Id` BETWEEN 30 AND 35",
    )


def _night_4(source: MySQLServer) -> None:
    """Every row deleted and re-inserted from a backup with older stamps; 30% updated without the stamp."""
    mysql_exec(
        source,
        "CREATE TABLE `ci_backup` AS SELECT * FROM `ci`",
        "DELETE FROM `ci`",
        "INSERT INTO `ci` SELECT `Code`, CONCAT(`Val`, '-restored'), '2001-01-01 00:00:00' FROM `ci_backup`",
        "DROP TABLE `ci_backup`",
        "UPDATE `evo` SET `Qty` = -`Qty`, `DateTStamp` = `DateTStamp` WHERE `Id` % 10 < 3",
        "UPDATE `myi` SET `Note` = 'silent', `DateTStamp` = `DateTStamp` WHERE `Id` % 10 < 3",
        "UPDATE `zoo` SET `Js` = '{\"silent\": true}', `DateTStamp` = `DateTStamp` WHERE `Id` = 1",
    )


# ---------------------------------------------------------------------------
# Value-by-value comparison under the documented mapping


def _float_bits(value: float | None, fmt: str) -> bytes | None:
    return None if value is None else struct.pack(fmt, value)


def _frozen(value: Any) -> Any:
    """A parsed JSON value in a hashable form (numbers as exact Decimals, -0 equal to 0 as in jsonb)."""
    if isinstance(value, dict):
        return ("{", tuple(sorted((k, _frozen(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("[", tuple(_frozen(v) for v in value))
    return value


def _canonical(col: Any, value: Any) -> Any:
    """One comparable form: floats as their bits, blobs by sha256, JSON parsed with exact numbers."""
    if value is None:
        return None
    if isinstance(value, memoryview):
        value = bytes(value)
    if col.kind is Kind.double:
        return _float_bits(float(value), "<d")
    if col.kind is Kind.float:
        return _float_bits(float(value), "<f")
    if col.kind is Kind.binary:
        return hashlib.sha256(value).hexdigest()
    if col.kind is Kind.json:
        return _frozen(json_value(value) if isinstance(value, str) else value)
    if isinstance(value, decimal.Decimal) and col.kind is Kind.integer:
        return int(value)
    return value


def _source_values(server: MySQLServer, table: str) -> tuple[Any, list[tuple]]:
    conn = sessions.raw_connection(server)
    try:
        plan = load_plan.plan_load(catalog.read_table(conn, table), load_tables_config_for(table))
        selects = []
        for col in plan.columns:
            q = quote_ident(col.name, "mysql")
            if col.kind in (Kind.bit1, Kind.bits):
                selects.append(f"CAST({q} + 0 AS CHAR)")
            elif col.kind is Kind.float:
                selects.append(f"CAST({q} AS DOUBLE)")
            elif col.kind is Kind.integer and col.source.data_type == "year":
                selects.append(f"{q} + 0")
            else:
                selects.append(col.carried_sql(q))
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(selects)} FROM {quote_ident(table, 'mysql')}")
            rows = cur.fetchall()
    finally:
        conn.close()
    out = []
    for row in rows:
        values = []
        for col, value in zip(plan.columns, row, strict=True):
            raw = value.encode() if isinstance(value, str) else value
            want = expected_value(col, raw)
            if col.kind is Kind.double and raw is not None:
                want = float(raw.decode())  # keeps -0.0
            values.append(_canonical(col, want))
        out.append(tuple(values))
    return plan, out


_CONFIG: dict[str, Any] = {}


def load_tables_config_for(table: str) -> Any:
    return _CONFIG["config"].effective(table)


def _raw_values(pg: PostgresServer, plan: Any) -> list[tuple]:
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT {', '.join(quote_ident(c.name, 'postgres') + ('::text' if c.kind is Kind.json else '') for c in plan.columns)} "  # noqa: E501
                f"FROM {quote_qualified('raw', plan.table, 'postgres')}"
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    return [tuple(_canonical(c, v) for c, v in zip(plan.columns, row, strict=True)) for row in rows]


def _replica_equals_source(source: MySQLServer, replica: MySQLServer, table: str) -> None:
    def rows(server: MySQLServer) -> collections.Counter:
        conn = sessions.raw_connection(server)
        try:
            with conn.cursor() as cur:
                # Every column by name: SELECT * would leave out INVISIBLE ones.
                cur.execute(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                    (table,),
                )
                names = [sessions.catalog_name(r[0]) for r in cur.fetchall()]
                cur.execute(
                    f"SELECT {', '.join(quote_ident(n, 'mysql') for n in names)} FROM {quote_ident(table, 'mysql')}"
                )
                return collections.Counter(cur.fetchall())
        finally:
            conn.close()

    assert rows(replica) == rows(source), f"replica.{table} differs from the source"


def _assert_all_equal(source: MySQLServer, replica: MySQLServer, pg: PostgresServer, night: str) -> None:
    for table in _tables_yml()["tables"]:
        _replica_equals_source(source, replica, table)
        plan, want = _source_values(source, table)
        got = _raw_values(pg, plan)
        missing = collections.Counter(want) - collections.Counter(got)
        extra = collections.Counter(got) - collections.Counter(want)
        assert not missing, f"{night}: raw.{table}: missing {list(missing)[:3]}, extra {list(extra)[:3]}"
        assert not extra, f"{night}: raw.{table}: missing {list(missing)[:3]}, extra {list(extra)[:3]}"


def _pg_types(pg: PostgresServer, table: str) -> dict[str, str]:
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                "to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (f"raw.{table}",),
            )
            return dict(cur.fetchall())
    finally:
        conn.close()


@pytest.mark.slow
def test_every_type_and_four_nights_of_changes_stay_equal_to_the_source(
    make_mysql_db: Callable[[str], MySQLServer],
    make_pg_db: Callable[[str], PostgresServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    prefect_server: None,
) -> None:
    from flows.nightly import nightly_etl

    source, replica, pg = make_mysql_db("tfsrc"), make_mysql_db("tfrep"), make_pg_db("tfpg")
    _seed(source)
    path = tmp_path / "tables.yml"
    path.write_text(yaml.safe_dump(_tables_yml()), encoding="utf-8")
    _CONFIG["config"] = load_tables_config(path)
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    for block, server in (
        ("opendental-source", source),
        ("opendental-replication", replica),
        ("analytics-postgres", pg),
    ):
        _set_env(monkeypatch, block, server)

    def night(name: str) -> dict[str, dict[str, Any]]:
        rows = {r["table"]: r for r in nightly_etl(tables_file=str(path))}
        bad = {t: r for t, r in rows.items() if r["status"] not in ("ok", "unchanged") or r["verification"] != "ok"}
        assert not bad, f"{name}: {bad}"
        _assert_all_equal(source, replica, pg, name)
        return rows

    night("seed")
    types = _pg_types(pg, "zoo")
    assert types["Ts"] == "timestamp with time zone"
    assert types["Dt6"] == "timestamp(6) without time zone"
    assert types["G"] == "bytea"
    assert types["Gs"] == "integer"
    assert types["Inv"] == "integer"
    assert types["Uu"] == "text"
    # The autumn fold: one wall clock, two instants an hour apart.
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT "Id", "Ts" FROM raw.zoo WHERE "Id" IN (6, 7) ORDER BY "Id"')
            fold = dict(cur.fetchall())
    finally:
        conn.close()
    assert fold[6] == dt.datetime(2024, 10, 27, 0, 30, tzinfo=dt.UTC)
    assert fold[7] == dt.datetime(2024, 10, 27, 1, 30, tzinfo=dt.UTC)

    _night_1(source)
    night("night 1")
    types = _pg_types(pg, "evo")
    assert (types["Qty"], types["Amount"]) == ("bigint", "numeric(14,4)")
    # Widened in place on both targets: the replica went on incrementally, raw was altered.
    assert mysql_query(replica, "SELECT mode FROM `_clinicflow_replication_state` WHERE table_name = 'evo'") == [
        ("incremental",)
    ]
    assert pg_query(pg, "SELECT mode FROM clinicflow.load_state WHERE table_name = 'evo'") == [("incremental",)]

    _night_2(source)
    night("night 2")
    assert "Gone" in _pg_types(pg, "evo")  # a dropped column stays in raw (NULL from then on)
    # The row stamped in 2031 was copied, but neither leg's watermark went past the source's clock.
    replica_mark = mysql_query(
        replica, "SELECT watermark FROM `_clinicflow_replication_state` WHERE table_name = 'evo'"
    )[0][0]
    raw_mark = pg_query(pg, "SELECT watermark[1] FROM clinicflow.load_state WHERE table_name = 'evo'")[0][0]
    assert "2031" not in str(replica_mark), (replica_mark, raw_mark)
    assert not raw_mark.startswith("2031"), (replica_mark, raw_mark)

    _night_3(source)
    night("night 3")

    _night_4(source)
    night("night 4")


def test_an_uncarriable_column_is_reported_before_the_night(
    make_mysql_db: Callable[[str], MySQLServer], tmp_path: Path
) -> None:
    source = make_mysql_db("tfval")
    long_name = "L" * 64  # every type MariaDB 10.11 has is carried; an over-long name is not
    mysql_exec(source, f"CREATE TABLE `clinic` (`ClinicNum` int PRIMARY KEY, `Addr` inet6 NULL, `{long_name}` int)")
    path = tmp_path / "tables.yml"
    path.write_text(yaml.safe_dump({"version": 1, "tables": {"clinic": {"primary_key": ["ClinicNum"]}}}))
    report = config_drift.check_drift(source, load_tables_config(path))
    found = {(i.table, i.column) for i in report.items if i.kind is config_drift.DriftKind.column_not_carriable}
    assert found == {("clinic", long_name)}
    assert report.has_drift
    from clinicflow.opendental.tables import schema_analysis

    analysis = schema_analysis.analyze_source(source)
    assert long_name in analysis.errors["clinic"]
    assert "'Addr'" not in analysis.errors["clinic"]


def test_a_staging_table_left_by_a_killed_load_is_dropped_on_the_next_incremental_night(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    from clinicflow.opendental.tables.config import TableConfig
    from clinicflow.opendental.warehouse import load_steps

    replica, pg = make_mysql_db("tfstg"), make_pg_db("tfstgpg")
    mysql_exec(
        replica,
        "CREATE TABLE `t` (`Id` int PRIMARY KEY, `DateTStamp` datetime NOT NULL)",
        "INSERT INTO `t` VALUES (1, '2024-01-01'), (2, '2024-01-02')",
    )
    config = TableConfig(primary_key=["Id"], extraction_strategy="incremental", incremental_columns=["DateTStamp"])
    load_steps.setup_target(pg)
    assert load_steps.load_table_once(replica, pg, "t", config).status == "ok"
    # What a kill during a full load's chunks leaves: the staging table, half filled.
    pg_exec(
        pg,
        'CREATE TABLE clinicflow_stage.t ("Id" int, "DateTStamp" timestamp)',
        "INSERT INTO clinicflow_stage.t VALUES (1, now())",
    )
    outcome = load_steps.load_table_once(replica, pg, "t", config)
    assert outcome.status == "ok"
    assert outcome.mode == "incremental"
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('clinicflow_stage.t')")
            assert cur.fetchone()[0] is None
    finally:
        conn.close()
