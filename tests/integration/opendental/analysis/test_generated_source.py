"""Must-show behaviour on the OpenDental-shaped generator's database (real MariaDB)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import Result

from blocks.databases import MySQLServer
from clinicflow.opendental.tables import config_drift, schema_analysis, tables_yml
from clinicflow.opendental.tables.config import ExtractionStrategy, load_tables_config, parse_tables_config
from clinicflow_dev import generator

from .conftest import execute

DATE_T_STAMP_TABLES = ("patient", "appointment", "procedurelog", "commlog")
SEC_DATE_T_EDIT_TABLES = ("payment", "paysplit", "claimproc")


def test_generated_file_picks_change_columns_key_watermark_and_full_copies(
    demo_seeded: tuple[MySQLServer, dict[str, int]], tmp_path: Path
) -> None:
    demo_source, seeded_rows = demo_seeded
    result = tables_yml.write_tables_yml(schema_analysis.analyze_source(demo_source), tmp_path / "tables.yml")
    assert result.changed
    assert not result.errors
    text = (tmp_path / "tables.yml").read_text()
    config = parse_tables_config(yaml.safe_load(text))  # validates with the project's model

    assert set(config.tables) == set(seeded_rows)
    for name in DATE_T_STAMP_TABLES:
        assert config.effective(name).incremental_columns == ["DateTStamp"], name
        assert config.effective(name).is_incremental, name
    for name in SEC_DATE_T_EDIT_TABLES:
        assert config.effective(name).incremental_columns == ["SecDateTEdit"], name
    securitylog = config.effective("securitylog")
    assert securitylog.incremental_columns == ["SecurityLogNum"]
    assert securitylog.extraction_strategy is ExtractionStrategy.incremental_chunked
    for lookup in ("definition", "provider", "clinic", "operatory", "userod", "carrier"):
        assert config.effective(lookup).extraction_strategy is ExtractionStrategy.full_table, lookup
        assert config.effective(lookup).incremental_columns == [], lookup
    assert config.effective("patplan").primary_key == ["PatNum", "Ordinal"]
    assert config.effective("entrylog").primary_key == []
    assert config.effective("entrylog").extraction_strategy is ExtractionStrategy.full_table
    assert config.effective("patient").tier == 1
    assert config.effective("definition").tier == 3
    assert config.effective("procedurelog").estimated_rows == seeded_rows["procedurelog"]
    assert len(config.effective("procedurelog").columns or []) == 36
    # The header says from what: the block's printable address (never holds the password).
    assert f"# source: {demo_source.describe()}\n" in text


def test_regenerating_an_unchanged_source_gives_identical_bytes(demo_source: MySQLServer, tmp_path: Path) -> None:
    path = tmp_path / "tables.yml"
    tables_yml.write_tables_yml(
        schema_analysis.analyze_source(demo_source), path, generated_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    first = path.read_bytes()
    again = tables_yml.write_tables_yml(
        schema_analysis.analyze_source(demo_source), path, generated_at=datetime(2026, 3, 1, tzinfo=UTC)
    )
    assert not again.changed
    assert path.read_bytes() == first
    assert b"2026-01-01T00:00:00Z" in first


def test_an_override_survives_regeneration(demo_source: MySQLServer, tmp_path: Path) -> None:
    path = tmp_path / "tables.yml"
    tables_yml.write_tables_yml(schema_analysis.analyze_source(demo_source), path)
    generated = path.read_text()
    hand = (
        "overrides:\n"
        "  # securitylog rows are tiny: bigger chunks (ops ticket 1234)\n"
        "  securitylog:\n"
        "    batch_size: 400000\n"
        "    reconcile_slices: 7\n"
        "  definition: {tier: 2}\n"
    )
    path.write_text(generated[: generated.index("\noverrides:") + 1] + hand)

    # The source changes (more rows), so the generated part changes too.
    generator.apply_changes(demo_source, "patient", inserts=25)
    result = tables_yml.write_tables_yml(schema_analysis.analyze_source(demo_source), path)
    regenerated = path.read_text()
    assert result.changed
    assert regenerated.endswith(hand)
    config = load_tables_config(path)
    assert config.tables["patient"].estimated_rows == 2025
    assert config.effective("securitylog").batch_size == 400_000
    assert config.effective("securitylog").reconcile_slices == 7
    assert config.effective("definition").tier == 2


def _changes(result: Result) -> set[tuple[str, str, str | None]]:
    return {(c["table"], c["change"], c["column"]) for c in json.loads(result.stdout)["changes"]}


def test_check_names_each_source_change_and_exits_non_zero(
    demo_source: MySQLServer, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    path = tmp_path / "tables.yml"
    written = cli(demo_source, path, "analyze-schema")
    assert written.exit_code == 0, written.stdout
    clean = cli(demo_source, path, "analyze-schema", "--check", "--json")
    assert clean.exit_code == 0
    assert json.loads(clean.stdout)["has_drift"] is False

    execute(
        demo_source,
        "ALTER TABLE patient ADD COLUMN Nickname varchar(50) NOT NULL DEFAULT ''",
        "DROP TABLE carrier",
        "ALTER TABLE claimproc MODIFY FeeBilled decimal(10,2) NOT NULL DEFAULT 0",
    )
    drift = cli(demo_source, path, "analyze-schema", "--check", "--json")
    assert drift.exit_code == 1
    assert _changes(drift) == {
        ("patient", "column_added", "Nickname"),
        ("carrier", "table_dropped", None),
        ("claimproc", "column_retyped", "FeeBilled"),
    }
    retyped = next(c for c in json.loads(drift.stdout)["changes"] if c["change"] == "column_retyped")
    assert retyped["expected"] == "double not null"
    assert retyped["actual"] == "decimal(10,2) not null"

    table = cli(demo_source, path, "analyze-schema", "--check")  # the rich table for people
    assert table.exit_code == 1
    for word in ("Nickname", "carrier", "FeeBilled", "table_dropped", "column_added", "column_retyped"):
        assert word in table.stdout, word

    live = cli(demo_source, path, "validate", "--live")
    assert live.exit_code == 1
    assert "carrier" in live.stdout


def test_check_reports_new_table_lost_key_and_dropped_watermark(demo_source: MySQLServer, tmp_path: Path) -> None:
    path = tmp_path / "tables.yml"
    tables_yml.write_tables_yml(schema_analysis.analyze_source(demo_source), path)
    execute(
        demo_source,
        "CREATE TABLE recall (RecallNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY) ENGINE=MyISAM",
        "ALTER TABLE patplan DROP PRIMARY KEY",
        "ALTER TABLE payment DROP COLUMN SecDateTEdit",
    )
    report = config_drift.check_drift(demo_source, load_tables_config(path))
    found = {(i.table, i.kind.value, i.column) for i in report.items}
    assert found == {
        ("recall", "table_added", None),
        ("patplan", "primary_key_lost", None),
        ("payment", "column_dropped", "SecDateTEdit"),
    }
    dropped = next(i for i in report.items if i.table == "payment")
    assert "incremental column" in dropped.detail


def test_stalled_watermark_is_drift_a_moving_one_is_not(demo_source: MySQLServer, tmp_path: Path) -> None:
    path = tmp_path / "tables.yml"
    tables_yml.write_tables_yml(schema_analysis.analyze_source(demo_source), path)
    config = load_tables_config(path)

    # Inserts and updates that move the change column: no drift.
    generator.apply_changes(demo_source, "procedurelog", inserts=50, updates=20)
    generator.apply_changes(demo_source, "securitylog", inserts=10)
    assert not config_drift.check_drift(demo_source, config).has_drift

    # New rows whose change column no longer moves (an application that stopped setting it).
    stale = config.tables["commlog"].observed_watermark
    execute(demo_source, f"INSERT INTO commlog (PatNum, DateTStamp) SELECT seq, '{stale}' FROM seq_1_to_30")
    report = config_drift.check_drift(demo_source, config)
    assert [(i.table, i.kind.value, i.column) for i in report.items] == [("commlog", "watermark_stalled", "DateTStamp")]
    assert "stopped moving" in report.items[0].detail
    assert "30 rows" in report.items[0].detail


def test_validate_and_show_commands(demo_source: MySQLServer, tmp_path: Path, cli: Callable[..., Result]) -> None:
    path = tmp_path / "tables.yml"
    assert cli(demo_source, path, "analyze-schema", "--json").exit_code == 0
    text = path.read_text()
    path.write_text(text[: text.index("\noverrides:") + 1] + "overrides:\n  patient:\n    batch_size: 1234\n")

    valid = cli(demo_source, path, "validate")
    assert valid.exit_code == 0
    assert "22 tables" in valid.stdout
    assert cli(demo_source, path, "validate", "--live").exit_code == 0

    shown = cli(demo_source, path, "show", "patient", "--json")
    assert shown.exit_code == 0
    data = json.loads(shown.stdout)
    assert data["settings"]["batch_size"] == 1234
    assert data["overridden"] == ["batch_size"]
    assert data["settings"]["incremental_columns"] == ["DateTStamp"]
    assert "override" in cli(demo_source, path, "show", "patient").stdout

    missing = cli(demo_source, path, "show", "patien")
    assert missing.exit_code == 1
    assert "patient" in missing.stdout

    path.write_text(text.replace("    batch_size: 99000\n", "    batch_size: lots\n", 1))
    broken = cli(demo_source, path, "validate")
    assert broken.exit_code == 1
    assert "batch_size" in broken.stdout


def test_unreachable_source_exits_2_without_password(
    demo_source: MySQLServer, tmp_path: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PASSWORD", "fake-sentinel-not-a-credential-17")
    wrong = demo_source.model_copy(update={"username": "nobody_here"})
    result = cli(wrong, tmp_path / "tables.yml", "analyze-schema")
    assert result.exit_code == 2
    assert "nobody_here" in result.stdout
    assert "fake-sentinel-not-a-credential-17" not in result.stdout
