"""analyze-schema with source tables tables.yml cannot hold (skipped with a warning, or --exclude),
and validate --live checking boolean_columns (column exists, is tinyint(1))."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from typer.testing import Result

from blocks.databases import MySQLServer
from clinicflow.opendental.tables.config import load_tables_config
from tests.integration.opendental.analysis.conftest import execute

LONG = "t" * 60  # a valid MySQL name, too long for the __cf_shadow suffix


def _source(make_mysql_db: Callable[[str], MySQLServer]) -> MySQLServer:
    server = make_mysql_db("names")
    execute(
        server,
        "CREATE TABLE patient (PatNum bigint NOT NULL PRIMARY KEY, IsActive tinyint(1) NOT NULL, "
        "Level int NOT NULL, Flag tinyint(4) NOT NULL)",
        "INSERT INTO patient VALUES (1, 1, 3, 0)",
        "CREATE TABLE `claim-archive` (Id int NOT NULL PRIMARY KEY)",
        f"CREATE TABLE `{LONG}` (Id int NOT NULL PRIMARY KEY)",
        "CREATE TABLE `patient__cf_shadow` (PatNum bigint NOT NULL PRIMARY KEY)",
        "CREATE TABLE scratch (Id int NOT NULL PRIMARY KEY)",
    )
    return server


def test_analyze_schema_skips_names_the_model_rejects_with_a_warning(
    make_mysql_db: Callable[[str], MySQLServer], cli: Callable[..., Result], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    server = _source(make_mysql_db)
    path = tmp_path / "tables.yml"
    result = cli(server, path, "analyze-schema")
    assert result.exit_code == 0, result.output
    for name in ("claim-archive", LONG, "patient__cf_shadow"):
        assert f"warning: table '{name}' skipped (not copied)" in result.output
    assert sorted(load_tables_config(path).tables) == ["patient", "scratch"]
    # The drift check does not report them as new tables night after night.
    result = cli(server, path, "analyze-schema", "--check")
    assert result.exit_code == 0, result.output

    result = cli(server, path, "analyze-schema", "--exclude", "scratch")
    assert result.exit_code == 0, result.output
    assert sorted(load_tables_config(path).tables) == ["patient"]
    assert "skipped (not copied)" in result.output
    assert "'scratch'" not in result.output
    assert cli(server, path, "analyze-schema", "--check", "--exclude", "scratch").exit_code == 0
    assert cli(server, path, "analyze-schema", "--check").exit_code == 1  # scratch is in the source, not the file


def test_validate_live_checks_boolean_columns(
    make_mysql_db: Callable[[str], MySQLServer], cli: Callable[..., Result], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    server = _source(make_mysql_db)
    path = tmp_path / "tables.yml"
    execute(server, "DROP TABLE scratch")
    assert cli(server, path, "analyze-schema").exit_code == 0
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["overrides"] = {"patient": {"boolean_columns": ["IsActive"]}}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = cli(server, path, "validate", "--live")
    assert result.exit_code == 0, result.output

    data["overrides"] = {"patient": {"boolean_columns": ["IsActive", "Level", "Flag", "Gone"]}}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = cli(server, path, "validate", "--live", "--json")
    assert result.exit_code == 1, result.output
    import json

    report = json.loads(result.output)["changes"]
    changes = {c["column"]: c for c in report if c["change"] == "boolean_column_invalid"}
    assert sorted(changes) == ["Flag", "Gone", "Level"]
    assert changes["Level"]["actual"] == "int(11)"
    assert changes["Gone"]["actual"] is None
    assert changes["Flag"]["detail"] == "boolean column patient.Flag is tinyint(4), not tinyint(1)"


def test_unreadable_tables_yml_paths_are_one_line(
    make_mysql_db: Callable[[str], MySQLServer], cli: Callable[..., Result], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    server = _source(make_mysql_db)
    path = tmp_path / "tables.yml"
    path.write_bytes(b"tables:\n  patient: {}\n# \xff\xfe private-bytes\n")
    result = cli(server, path, "analyze-schema")
    assert result.exit_code == 1
    assert "is not UTF-8 text" in result.output
    assert "private-bytes" not in result.output
    result = cli(server, path, "validate")
    assert result.exit_code == 1
    assert "not UTF-8 text" in result.output
    assert "private-bytes" not in result.output
    result = cli(server, tmp_path, "validate", "--live")
    assert result.exit_code == 1
    assert "is a directory" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_validate_live_names_columns_postgresql_would_cut_to_one_name(
    make_mysql_db: Callable[[str], MySQLServer], cli: Callable[..., Result], tmp_path: Path, monkeypatch
) -> None:
    import json

    server = make_mysql_db("cut")
    first, second = "n" * 62 + "_a", "n" * 62 + "_b"
    execute(server, f"CREATE TABLE wide (Id int NOT NULL PRIMARY KEY, `{first}` int, `{second}` int)")
    path = tmp_path / "tables.yml"
    analysis = cli(server, path, "analyze-schema")
    assert analysis.exit_code == 1
    assert first in analysis.output
    assert second in analysis.output
    result = cli(server, path, "validate", "--live", "--json")
    assert result.exit_code == 1
    changes = json.loads(result.output)["changes"]
    assert {(c["change"], c["column"]) for c in changes} == {
        ("column_not_carriable", first),
        ("column_not_carriable", second),
    }
    assert all("wide" in c["detail"] and "63" in c["detail"] for c in changes)
