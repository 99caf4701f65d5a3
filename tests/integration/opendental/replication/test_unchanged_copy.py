"""Tables copied fully every night are left alone when their content did not change, and copied when it did."""

from __future__ import annotations

import pytest

from blocks.databases import MySQLServer
from clinicflow.connectors.mysql.checksums import table_checksum
from clinicflow.opendental.replication.replica_copy import replicate_table_once
from clinicflow.opendental.tables.config import TableConfig
from tests.conftest import mysql_exec, mysql_query

DEFINITION = TableConfig(primary_key=["DefNum"], batch_size=50)  # full_table
ENTRYLOG = TableConfig(primary_key=[])  # no key: copied fully


@pytest.mark.parametrize(("table", "config"), [("definition", DEFINITION), ("entrylog", ENTRYLOG)])
def test_unchanged_table_is_not_copied_and_a_change_on_either_side_is(
    source: MySQLServer, replica: MySQLServer, table: str, config: TableConfig
) -> None:
    first = replicate_table_once(source, replica, table, config)
    assert first["mode"] == "full"
    assert first["rows"] > 0

    # Nothing changed: nothing copied, the replica's table is the same table (no shadow, no swap).
    mysql_exec(replica, f"ALTER TABLE `{table}` COMMENT = 'marker: not replaced'")
    quiet = replicate_table_once(source, replica, table, config)
    assert (quiet["mode"], quiet["rows"]) == ("unchanged", 0)
    assert "CHECKSUM TABLE equal" in quiet["note"]
    assert (
        mysql_query(
            replica,
            "SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = '{table}'",
        )[0][0]
        == "marker: not replaced"
    )

    # A change at the source is copied.
    (count,) = mysql_query(source, f"SELECT COUNT(*) FROM `{table}`")[0]
    mysql_exec(source, f"DELETE FROM `{table}` LIMIT 1")
    changed = replicate_table_once(source, replica, table, config)
    assert (changed["mode"], changed["rows"]) == ("full", count - 1)
    assert table_checksum(replica, table) == table_checksum(source, table)

    # So is damage to the replica: the copy follows the source, not the last run.
    mysql_exec(replica, f"DELETE FROM `{table}` LIMIT 1")
    repaired = replicate_table_once(source, replica, table, config)
    assert (repaired["mode"], repaired["rows"]) == ("full", count - 1)
    assert table_checksum(replica, table) == table_checksum(source, table)

    # A full refresh copies whatever the checksums say.
    assert replicate_table_once(source, replica, table, config, full_refresh=True)["mode"] == "full"
