"""A source column changed in place (wider type, other charset) reaches the replica intact."""

from __future__ import annotations

from blocks.databases import MySQLServer
from clinicflow.connectors.mysql.catalog import read_table
from clinicflow.connectors.mysql.checksums import table_checksum
from clinicflow.connectors.mysql.sessions import raw_connection
from clinicflow.opendental.replication.replica_columns import column_changes, replica_columns
from clinicflow.opendental.replication.replica_copy import replicate_table_once
from clinicflow.opendental.tables.config import TableConfig
from tests.conftest import mysql_exec

PATIENT = TableConfig(
    primary_key=["PatNum"], extraction_strategy="incremental", incremental_columns=["DateTStamp"], batch_size=500
)


def test_widened_and_recoded_columns_trigger_a_full_copy(source: MySQLServer, replica: MySQLServer) -> None:
    first = replicate_table_once(source, replica, "patient", PATIENT)
    assert first["mode"] == "full"
    assert replicate_table_once(source, replica, "patient", PATIENT)["mode"] == "incremental"

    # 156 characters: varchar(100) would cut it.
    long_address = "1200 Northeast Martin Luther King Junior Boulevard, " * 3
    mysql_exec(
        source,
        "ALTER TABLE patient MODIFY Address varchar(255) NOT NULL DEFAULT ''",
        "ALTER TABLE patient MODIFY Preferred varchar(100) CHARACTER SET latin1 NOT NULL DEFAULT ''",
        f"UPDATE patient SET Address = '{long_address}', Preferred = 'Zoë' WHERE PatNum = 3",
    )
    second = replicate_table_once(source, replica, "patient", PATIENT)
    assert second["mode"] == "full"
    assert "Address varchar(100) -> varchar(255)" in second["note"]
    assert "Preferred collation" in second["note"]
    src_conn, dst_conn = raw_connection(source), raw_connection(replica)
    try:
        source_cols = replica_columns(read_table(src_conn, "patient"))
        assert column_changes(source_cols, replica_columns(read_table(dst_conn, "patient"))) == []
        with dst_conn.cursor() as cur:
            cur.execute("SELECT Address, HEX(Preferred) FROM patient WHERE PatNum = 3")
            address, preferred = cur.fetchone()
    finally:
        src_conn.close()
        dst_conn.close()
    assert address == long_address
    assert preferred == "5A6FEB"  # 'Zoë' in latin1, as the source stores it
    assert table_checksum(replica, "patient") == table_checksum(source, "patient")
    # Nothing changed since: back to incremental.
    assert replicate_table_once(source, replica, "patient", PATIENT)["mode"] == "incremental"


def test_widened_columns_are_altered_in_place_and_copied_incrementally(
    source: MySQLServer, replica: MySQLServer
) -> None:
    assert replicate_table_once(source, replica, "patient", PATIENT)["mode"] == "full"
    long_address = "1200 Northeast Martin Luther King Junior Boulevard, " * 3
    mysql_exec(
        source,
        "ALTER TABLE patient MODIFY Address varchar(255) NOT NULL DEFAULT ''",
        f"UPDATE patient SET Address = '{long_address}', DateTStamp = NOW() WHERE PatNum = 3",
    )
    second = replicate_table_once(source, replica, "patient", PATIENT)
    assert second["mode"] == "incremental", second
    assert "altered in place" in second["note"], second
    assert table_checksum(replica, "patient") == table_checksum(source, "patient")
    src_conn, dst_conn = raw_connection(source), raw_connection(replica)
    try:
        source_cols = replica_columns(read_table(src_conn, "patient"))
        assert column_changes(source_cols, replica_columns(read_table(dst_conn, "patient"))) == []
    finally:
        src_conn.close()
        dst_conn.close()
