"""The one MySQL catalog reader against the real MariaDB: every field, one table or the whole database, and the
replication and analysis projections of it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from blocks.databases import MySQLServer
from clinicflow.connectors.mysql import catalog, sessions
from clinicflow.core.errors import SourceTableMissing
from clinicflow.opendental.replication.replica_columns import replica_columns
from clinicflow.opendental.tables.source_schema import definition, read_schema_with
from tests.conftest import mysql_exec


def test_one_reader_gives_every_field_for_one_table_or_the_whole_database(
    make_mysql_db: Callable[[str], MySQLServer],
) -> None:
    db = make_mysql_db("catalog")
    mysql_exec(
        db,
        "CREATE TABLE visit (Region int unsigned NOT NULL, VisitNum bigint(20) NOT NULL AUTO_INCREMENT, "
        "Kind enum('New','Old') NOT NULL DEFAULT 'New', Note varchar(40) CHARACTER SET latin1 NULL, "
        "Fee decimal(10,2) NOT NULL DEFAULT 0.00, Doc json, Body longtext, "
        "Stamp timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3), "
        "Upper varchar(40) AS (UPPER(Note)) VIRTUAL, "
        "PRIMARY KEY (VisitNum, Region), UNIQUE KEY uq_note (Note(10), Region), KEY k_stamp (Stamp)) ENGINE=InnoDB",
        "CREATE TABLE plain (Id int NOT NULL) ENGINE=MyISAM",
        "INSERT INTO plain VALUES (1), (2), (3)",
        "CREATE VIEW plain_view AS SELECT Id FROM plain",
    )
    raw = sessions.raw_connection(db)
    decoded = db.connect()
    try:
        visit = catalog.read_table(raw, "visit")
        whole = catalog.read_catalog(raw)
        # Bytes (raw session) and text (decoders on) read the same catalog; so do one table and the whole database.
        assert catalog.read_catalog(decoded, db.database) == whole
        assert whole == {name: catalog.read_table(raw, name) for name in ("plain", "plain_view", "visit")}
        assert catalog.find_table(raw, "nothing") is None
        with pytest.raises(SourceTableMissing, match="'nothing': not found in the replication database"):
            catalog.read_table(raw, "nothing", where="replication")
        assert catalog.table_exists(raw, "plain_view")
        assert not catalog.table_exists(raw, "nothing")
        analysis = read_schema_with(decoded, db.database, "mysql://test")
    finally:
        raw.close()
        decoded.close()

    col = {c.name: c for c in visit.columns}
    assert [c.ordinal for c in visit.columns] == list(range(1, 10))
    assert visit.primary_key == ("VisitNum", "Region")  # key order, not column order
    assert visit.unique_keys == (("Note", "Region"),)
    assert [(i.name, i.prefix_lengths) for i in visit.indexes] == [("k_stamp", (None,)), ("uq_note", (10, None))]
    assert visit.index_leading == {"VisitNum", "Note", "Stamp"}
    assert (visit.engine.lower(), visit.table_type) == ("innodb", "BASE TABLE")
    assert col["VisitNum"].auto_increment
    assert visit.auto_increment_key is None
    assert col["Region"].unsigned
    assert col["Region"].is_integer
    assert not col["Region"].nullable
    assert col["Kind"].column_type == "enum('New','Old')"  # the values keep their case
    assert col["Kind"].default in ("'New'", "New")  # MariaDB quotes string defaults, MySQL does not
    assert (col["Note"].charset, col["Note"].collation) == ("latin1", "latin1_swedish_ci")
    assert (col["Fee"].numeric_precision, col["Fee"].numeric_scale) == (10, 2)
    assert col["Doc"].is_json
    assert not col["Body"].is_json
    assert col["Stamp"].on_update
    assert col["Stamp"].datetime_precision == 3
    assert col["Upper"].generated
    assert not col["Stamp"].generated
    assert whole["plain"].exact_row_count
    assert whole["plain"].table_rows == 3
    assert whole["plain_view"].table_type == "VIEW"
    assert whole["plain_view"].engine == ""

    # The replicator copies the stored columns, COLUMN_TYPE in lower case; the analysis sees base tables only.
    replicated = replica_columns(visit)
    assert "Upper" not in [c.name for c in replicated]
    assert next(c for c in replicated if c.name == "Kind").column_type == "enum('new','old')"
    assert sorted(analysis.tables) == ["plain", "visit"]
    assert definition(col["Stamp"]) == "timestamp(3) not null on update current_timestamp()"
    assert definition(col["VisitNum"]) == "bigint(20) not null auto_increment"
