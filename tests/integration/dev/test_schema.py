"""The generated schema has OpenDental's shape (real MariaDB, read back from information_schema)."""

from __future__ import annotations

import pytest

from blocks.databases import MySQLServer
from clinicflow_dev import generator

from .conftest import query

REQUIRED_TABLES = {
    "patient",
    "appointment",
    "procedurelog",
    "commlog",
    "document",
    "payment",
    "paysplit",
    "adjustment",
    "claim",
    "claimproc",
    "securitylog",
    "definition",
    "provider",
    "clinic",
    "carrier",
    "insplan",
    "operatory",
    "userod",
}
DATETSTAMP_TABLES = ["patient", "appointment", "procedurelog", "commlog", "document"]
SECDATETEDIT_TABLES = ["payment", "paysplit", "adjustment", "claim", "claimproc"]


class Schema:
    """information_schema of the generated database, read once."""

    def __init__(self, server: MySQLServer, names: list[str]) -> None:
        self.server = server
        self.names = names
        self.columns: dict[str, dict[str, dict[str, str]]] = {}
        keys = ("type", "key", "extra", "default", "nullable", "charset")
        for table, *values in query(
            server,
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY, EXTRA, "
            "COLUMN_DEFAULT, IS_NULLABLE, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (server.database,),
        ):
            self.columns.setdefault(table, {})[values[0]] = dict(zip(keys, values[1:], strict=True))
        self.primary_keys: dict[str, list[str]] = {table: [] for table in self.columns}
        for table, column in query(
            server,
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = %s AND INDEX_NAME = 'PRIMARY' "
            "ORDER BY TABLE_NAME, SEQ_IN_INDEX",
            (server.database,),
        ):
            self.primary_keys[table].append(column)


@pytest.fixture(scope="module")
def schema(module_db: MySQLServer) -> Schema:
    return Schema(module_db, generator.create_schema(module_db, filler_tables=12))


def test_create_schema_returns_what_it_made(schema: Schema) -> None:
    server, names = schema.server, schema.names
    made = {
        r[0]
        for r in query(
            server, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (server.database,)
        )
    }
    assert set(names) == made
    assert names == generator.table_names(filler_tables=12)
    assert len(names) == len(made) == 21 + 12 + 1  # core + filler + edgecase
    assert made >= REQUIRED_TABLES
    assert generator.EDGECASE_TABLE in made


def test_every_table_is_myisam_utf8mb3(schema: Schema) -> None:
    server, names = schema.server, schema.names
    rows = query(
        server,
        "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (server.database,),
    )
    assert len(rows) == len(names)
    for table, engine, collation in rows:
        assert engine == "MyISAM", table
        assert collation.startswith("utf8mb3_"), (table, collation)


def test_procedurelog_has_36_columns(schema: Schema) -> None:
    assert len(schema.columns["procedurelog"]) == 36


def test_num_keys_are_bigint_auto_increment(schema: Schema) -> None:
    names = schema.names
    single_key_tables = 0
    for table in names:
        key = schema.primary_keys[table]
        if len(key) != 1:
            continue
        single_key_tables += 1
        column = schema.columns[table][key[0]]
        assert key[0].endswith("Num"), table
        assert column["type"] == "bigint(20)", table
        assert "auto_increment" in column["extra"], table
    assert single_key_tables == len(names) - 2  # all but the composite-key and the no-key table


def test_composite_key_and_keyless_tables(schema: Schema) -> None:
    assert schema.primary_keys["patplan"] == ["PatNum", "Ordinal"]
    assert schema.primary_keys["entrylog"] == []
    assert "entrylog" in schema.names


@pytest.mark.parametrize(
    ("tables", "column"), [(DATETSTAMP_TABLES, "DateTStamp"), (SECDATETEDIT_TABLES, "SecDateTEdit")]
)
def test_change_columns_update_themselves(schema: Schema, tables: list[str], column: str) -> None:
    for table in tables:
        spec = generator.table_spec(table)
        assert spec.change_column == column, table
        definition = schema.columns[table][column]
        assert definition["type"] == "timestamp", table
        assert definition["nullable"] == "NO", table
        assert definition["default"] == "current_timestamp()", table
        assert definition["extra"] == "on update current_timestamp()", table


def test_entry_date_columns_where_opendental_has_them(schema: Schema) -> None:
    for table in SECDATETEDIT_TABLES:
        assert {"SecDateTEntry", "SecUserNumEntry"} <= set(schema.columns[table]), table
    assert "DateTEntry" in schema.columns["commlog"]
    assert "SecDateTEntry" in schema.columns["appointment"]


def test_securitylog_has_no_change_column(schema: Schema) -> None:
    columns = schema.columns["securitylog"]
    assert generator.table_spec("securitylog").change_column is None
    assert not [name for name, c in columns.items() if c["type"] == "timestamp" or "on update" in c["extra"]]
    assert schema.primary_keys["securitylog"] == ["SecurityLogNum"]


def test_opendental_column_conventions(schema: Schema) -> None:
    money = [
        ("procedurelog", "ProcFee"),
        ("payment", "PayAmt"),
        ("paysplit", "SplitAmt"),
        ("adjustment", "AdjAmt"),
        ("claim", "ClaimFee"),
        ("claimproc", "InsPayAmt"),
        ("patient", "EstBalance"),
    ]
    for table, column in money:
        assert schema.columns[table][column]["type"] == "double", (table, column)
    for table, column in [("patient", "PatStatus"), ("appointment", "AptStatus"), ("procedurelog", "ProcStatus")]:
        assert schema.columns[table][column]["type"] == "tinyint(3) unsigned", (table, column)
    # "No date" is 0001-01-01, as OpenDental stores it.
    assert schema.columns["patient"]["Birthdate"]["default"] == "'0001-01-01'"
    assert schema.columns["commlog"]["Note"]["charset"] == "utf8mb4"


def test_edgecase_table_covers_every_type(schema: Schema) -> None:
    types = {c["type"] for c in schema.columns[generator.EDGECASE_TABLE].values()}
    wanted = {
        "date",
        "datetime",
        "time",
        "timestamp",
        "varchar(255)",
        "text",
        "longtext",
        "longblob",
        "varbinary(64)",
        "char(8)",
        "bigint(20) unsigned",
        "int(10) unsigned",
        "smallint(5) unsigned",
        "int(11)",
        "tinyint(1)",
        "double",
        "float",
        "decimal(12,4)",
        "enum('a','b','c d')",
        "set('x','y','z')",
        "bit(1)",
        "bit(10)",
        "year(4)",
    }
    assert wanted <= types, wanted - types
    # json is longtext with a json_valid check in MariaDB.
    checks = query(
        schema.server,
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
        "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
        (schema.server.database, generator.EDGECASE_TABLE),
    )
    assert any("json_valid" in c[0] for c in checks)
    all_types = {c["type"] for name in generator.table_names(edge_cases=False) for c in schema.columns[name].values()}
    assert {"mediumtext", "blob"} <= all_types  # the remaining text/blob sizes live in the realistic tables


def test_create_schema_twice_replaces_tables(gen_db: MySQLServer) -> None:
    generator.seed(gen_db, rows={"patient": 5}, scale=0)
    generator.create_schema(gen_db)
    assert query(gen_db, "SELECT COUNT(*) FROM patient") == [(0,)]
