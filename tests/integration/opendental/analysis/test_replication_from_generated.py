"""The replication flow runs, unchanged, from a tables.yml the analysis generated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from blocks.databases import MySQLServer
from clinicflow.connectors.mysql.checksums import table_checksum
from clinicflow.opendental.tables import schema_analysis, tables_yml
from clinicflow_dev import generator


@pytest.mark.slow
def test_replicate_tables_from_the_generated_file(
    prefect_server: None,
    demo_source: MySQLServer,
    make_mysql_db: Callable[[str], MySQLServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.replicate import replicate_tables

    replica = make_mysql_db("anrepl")
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_DATABASE", demo_source.database)
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_REPLICATION_DATABASE", replica.database)
    tables_file = tmp_path / "tables.yml"
    analysis = schema_analysis.analyze_source(demo_source)
    tables_yml.write_tables_yml(analysis, tables_file)
    names = sorted(analysis.tables)

    first = {r["table"]: r for r in replicate_tables(tables_file=str(tables_file))}
    assert set(first) == set(names)
    assert all(r["status"] == "ok" for r in first.values())
    for name in names:
        assert table_checksum(replica, name) == table_checksum(demo_source, name), name

    generator.apply_changes(demo_source, "procedurelog", inserts=40, updates=15)
    generator.apply_changes(demo_source, "payment", inserts=5, updates=5)
    generator.apply_changes(demo_source, "securitylog", inserts=300)
    generator.apply_changes(demo_source, "definition", updates=3)
    second = {r["table"]: r for r in replicate_tables(tables_file=str(tables_file))}
    assert all(r["status"] == "ok" for r in second.values())
    # Tables the analysis made incremental are copied incrementally, lookup tables fully.
    assert second["procedurelog"]["mode"] == "incremental"
    assert second["procedurelog"]["rows"] < 1000
    assert second["securitylog"]["mode"] == "incremental"
    assert second["securitylog"]["rows"] == 300
    assert second["definition"]["mode"] == "full"
    for name in names:
        assert table_checksum(replica, name) == table_checksum(demo_source, name), name
