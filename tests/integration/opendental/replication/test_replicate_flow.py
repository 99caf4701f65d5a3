"""replicate_tables against real MariaDB databases: full, incremental, failures, artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks.databases import MySQLServer
from clinicflow.connectors.mysql import client
from clinicflow.connectors.mysql.checksums import table_checksum
from clinicflow.connectors.mysql.sessions import raw_connection
from clinicflow_dev import generator
from flows.replicate import TablesFailed, replicate_tables
from tests.integration.opendental.replication.conftest import demo_tables, write_tables_file
from tests.support.artifacts import flow_run_artifacts


def assert_equal(src: MySQLServer, dst: MySQLServer, tables: list[str]) -> None:
    for table in tables:
        assert table_checksum(dst, table) == table_checksum(src, table), f"{table} differs"


def test_full_then_incremental_copy(prefect_server, source, replica, point_blocks_at, tmp_path: Path) -> None:
    point_blocks_at(source, replica)
    tables = demo_tables()
    tables_file = write_tables_file(tmp_path / "tables.yml", tables)

    first = replicate_tables(tables_file=tables_file)
    assert {r["table"]: r["mode"] for r in first}["patient"] == "full"
    assert all(r["status"] == "ok" for r in first)
    assert_equal(source, replica, list(tables))

    generator.apply_changes(source, "patient", inserts=1500, updates=40)
    generator.apply_changes(source, "payment", inserts=10, updates=25)
    generator.apply_changes(source, "securitylog", inserts=4000)
    generator.apply_changes(source, "definition", updates=3)
    second = {r["table"]: r for r in replicate_tables(tables_file=tables_file)}
    assert second["patient"]["mode"] == "incremental"
    # Incremental runs read only the changes (plus a one-second overlap), never the whole table.
    assert 1540 <= second["patient"]["rows"] < 2000
    assert second["securitylog"]["rows"] == 4000
    assert_equal(source, replica, list(tables))


def test_rows_sharing_one_timestamp_across_chunk_boundaries(
    prefect_server, source, replica, point_blocks_at, tmp_path: Path
) -> None:
    point_blocks_at(source, replica)
    tables_file = write_tables_file(
        tmp_path / "tables.yml", {"procedurelog": demo_tables(batch_size=1000)["procedurelog"]}
    )
    replicate_tables(tables_file=tables_file)
    # 30,000 new rows, every one with the same DateTStamp, later than anything copied.
    generator.fill_table(source, "procedurelog", 30_000, fixed_timestamp="2030-01-01 08:00:00")
    result = replicate_tables(tables_file=tables_file)[0]
    assert result["mode"] == "incremental"
    assert_equal(source, replica, ["procedurelog"])
    conn = raw_connection(replica)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM procedurelog WHERE DateTStamp = '2030-01-01 08:00:00'")
        assert int(cur.fetchone()[0]) == 30_000
    conn.close()


@pytest.mark.parametrize("transport", ["client", "pymysql"])
def test_every_value_class_arrives_byte_exact(
    prefect_server, source, replica, point_blocks_at, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    # Both readers of the encoded rows (the C client and pymysql) must give the same bytes.
    monkeypatch.setenv(client.EXPORT_ENV, transport)
    if transport == "client" and client.client_binary() is None:
        pytest.skip("the mariadb command-line client is not installed")
    point_blocks_at(source, replica)
    tables_file = write_tables_file(tmp_path / "tables.yml", {"edgecase": demo_tables()["edgecase"]})
    replicate_tables(tables_file=tables_file)
    cols = (
        "DateCol, DateTimeCol, TimeCol, HEX(TextMb3), HEX(TextMb4), HEX(`LongText`), HEX(BlobCol), HEX(VarBin), "
        "HEX(CharCol), UBig, UInt, USmall, Flag, CAST(Dbl AS CHAR), CAST(Flt AS CHAR), `Signed`, `Dec`, EnumCol, "
        "SetCol, HEX(JsonCol), Bit1 + 0, Bit10 + 0, YearCol, DateTStamp"
    )
    rows = {}
    for name, server in (("src", source), ("dst", replica)):
        conn = raw_connection(server)
        with conn.cursor() as cur:
            cur.execute(f"SELECT EdgeCaseNum, {cols} FROM edgecase ORDER BY EdgeCaseNum")
            rows[name] = cur.fetchall()
        conn.close()
    assert rows["dst"] == rows["src"]
    flat = [v if isinstance(v, bytes) else str(v).encode() for row in rows["dst"] for v in row if v is not None]
    for expected in (
        b"0000-00-00",
        b"0001-01-01",
        b"-838:59:59",
        b"123:45:06",
        b"18446744073709551615",
        bytes(range(256)).hex().upper().encode(),
        "😀".encode().hex().upper().encode(),
        b"1023",
    ):
        assert any(expected in v for v in flat), expected
    assert any(v == b"610062" for v in flat)  # 'a', NUL, 'b' in utf8mb3 text


def test_missing_table_fails_alone_and_flow_fails(
    prefect_server, source, replica, point_blocks_at, tmp_path: Path
) -> None:
    point_blocks_at(source, replica)
    tables = {
        "definition": demo_tables()["definition"],
        "entrylog": demo_tables()["entrylog"],
        "nosuchtable": {"primary_key": ["NoSuchNum"], "tier": 1},
    }
    tables_file = write_tables_file(tmp_path / "tables.yml", tables)
    run = replicate_tables(tables_file=tables_file, return_state=True)
    with pytest.raises(TablesFailed, match="nosuchtable") as info:
        run.result()
    assert "not found in the source" in str(info.value)
    assert_equal(source, replica, ["definition", "entrylog"])

    artifact = flow_run_artifacts(run.state_details.flow_run_id)["replication-summary"]
    assert "nosuchtable" in str(artifact.data)
    assert "not found in the source" in str(artifact.data)
    assert "failed" in str(artifact.data)


def test_primary_key_mismatch_names_table(prefect_server, source, replica, point_blocks_at, tmp_path: Path) -> None:
    point_blocks_at(source, replica)
    tables_file = write_tables_file(tmp_path / "tables.yml", {"definition": {"primary_key": ["ItemName"]}})
    with pytest.raises(TablesFailed, match=r"definition.*primary_key"):
        replicate_tables(tables_file=tables_file)


def test_unknown_table_parameter_is_a_config_error(
    prefect_server, source, replica, point_blocks_at, tmp_path: Path
) -> None:
    from clinicflow.opendental.tables.config import ConfigError

    point_blocks_at(source, replica)
    tables_file = write_tables_file(tmp_path / "tables.yml", {"definition": demo_tables()["definition"]})
    with pytest.raises(ConfigError, match="patientz"):
        replicate_tables(tables=["patientz"], tables_file=tables_file)
