"""The analysis rules and the rendering, as plain functions (no database involved)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from clinicflow.connectors.mysql.catalog import CatalogColumn, CatalogTable
from clinicflow.opendental.tables import (
    analysis_rules,
    choices,
    config_drift,
    sampling,
    schema_analysis,
    source_schema,
    tables_yml,
)
from clinicflow.opendental.tables.config import ExtractionStrategy, TableConfig, parse_tables_config

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def col(name: str, column_type: str, *, nullable: bool = False, extra: str = "") -> CatalogColumn:
    return CatalogColumn(name, column_type.split("(")[0].split(" ")[0], column_type, nullable, extra=extra)


def table(
    name: str = "t",
    columns: tuple[CatalogColumn, ...] = (),
    primary_key: tuple[str, ...] = ("TNum",),
    rows: int = 0,
    data_length: int = 0,
    avg_row_length: int = 0,
) -> CatalogTable:
    columns = columns or (col("TNum", "bigint(20)", extra="auto_increment"),)
    return CatalogTable(
        name,
        columns,
        primary_key,
        engine="MyISAM",
        table_rows=rows,
        data_length=data_length,
        avg_row_length=avg_row_length,
    )


def test_candidates_prefer_edit_columns_then_on_update_then_entry_columns() -> None:
    info = table(
        columns=(
            col("TNum", "bigint(20)", extra="auto_increment"),
            col("DateTEntry", "datetime"),
            col("SecDateTEntry", "datetime"),
            col("LastChanged", "timestamp", extra="on update current_timestamp()"),
            col("AptDateTime", "datetime"),  # a business date, not change tracking
            col("SecDateTEdit", "timestamp", extra="on update current_timestamp()"),
            col("datetstamp", "timestamp", extra="on update current_timestamp()"),  # names are case-insensitive
            col("DateTimeDeleted", "date"),
        )
    )
    assert choices.candidate_columns(info, analysis_rules.AnalysisRules()) == [
        "datetstamp",
        "SecDateTEdit",
        "LastChanged",
        "SecDateTEntry",
        "DateTEntry",
    ]


def test_a_change_column_of_the_wrong_type_is_no_candidate() -> None:
    info = table(columns=(col("TNum", "bigint(20)"), col("DateTStamp", "date"), col("SecDateTEdit", "varchar(20)")))
    assert choices.candidate_columns(info, analysis_rules.AnalysisRules()) == []


@pytest.mark.parametrize(
    ("sample", "verdict"),
    [
        (sampling.ColumnSample("c", 0, 0, 0, None, None, True), None),  # empty table: no evidence against
        (sampling.ColumnSample("c", 100, 100, 0, "2020-01-01", "2025-01-01", True), None),
        (sampling.ColumnSample("c", 100, 96, 0, "2020-01-01", "2025-01-01", True), None),
        (sampling.ColumnSample("c", 100, 90, 0, "2020-01-01", "2025-01-01", True), "only 90 of 100"),
        (sampling.ColumnSample("c", 100, 100, 1, "2020-01-01", "2031-01-01", False), "outside"),
    ],
)
def test_judge_sample(sample: sampling.ColumnSample, verdict: str | None) -> None:
    result = sampling.judge_sample(sample, analysis_rules.AnalysisRules())
    assert (result is None) if verdict is None else (verdict in result)


def test_batch_size_follows_row_width_within_bounds() -> None:
    rules = analysis_rules.AnalysisRules(target_chunk_mb=16, min_batch_size=1_000, max_batch_size=200_000)
    narrow = table(rows=10_000, avg_row_length=20)
    wide = table(rows=10_000, avg_row_length=300)
    huge = table(rows=10_000, avg_row_length=1_000_000)
    assert choices.choose_batch_size(narrow, rules) == 200_000
    assert choices.choose_batch_size(wide, rules) == 55_000  # 16 MiB / 300 B = 55924, two significant digits
    assert choices.choose_batch_size(huge, rules) == 1_000
    # An empty table is sized from its declared column types.
    empty = table(columns=(col("TNum", "bigint(20)"), col("Note", "varchar(4000)")))
    assert choices.choose_batch_size(empty, rules) == int(16 * analysis_rules.MIB // (8 + 2000)) // 100 * 100


def test_large_keyed_tables_get_a_weekly_checksum_sweep() -> None:
    rules = analysis_rules.AnalysisRules(sliced_checksum_min_rows=1_000_000, weekly_slices=7)
    # Below the threshold: 0, sized each night from the live table (a 200 MB document table is not read whole).
    assert choices.choose_reconcile_slices(table(rows=999_999), rules) == 0
    assert choices.choose_reconcile_slices(table(rows=1_000_000), rules) == 7
    assert choices.choose_reconcile_slices(table(rows=5_000_000, primary_key=()), rules) == 0  # keyless: full copies


def test_strategy_by_size_key_and_watermark() -> None:
    rules = analysis_rules.AnalysisRules(full_copy_max_rows=1_000, chunked_min_rows=500_000, chunked_min_mb=256)
    stamp = choices.Watermark(("DateTStamp",), "")
    key = choices.Watermark(("TNum",), "")
    no_watermark = choices.Watermark((), "")
    assert choices.choose_strategy(table(rows=999), stamp, rules) is ExtractionStrategy.full_table
    # A few rows of large values (scanned documents): copied by their watermark, not whole every night.
    documents = table(rows=600, data_length=90 * analysis_rules.MIB)
    assert choices.choose_strategy(documents, stamp, rules) is ExtractionStrategy.incremental
    assert choices.choose_strategy(documents, no_watermark, rules) is ExtractionStrategy.full_table
    assert (
        choices.choose_strategy(table(rows=50_000, primary_key=()), choices.Watermark((), ""), rules)
        is ExtractionStrategy.full_table
    )
    assert choices.choose_strategy(table(rows=50_000), no_watermark, rules) is ExtractionStrategy.full_table
    assert choices.choose_strategy(table(rows=50_000), stamp, rules) is ExtractionStrategy.incremental
    assert choices.choose_strategy(table(rows=600_000), stamp, rules) is ExtractionStrategy.incremental_chunked
    assert (
        choices.choose_strategy(table(rows=10_000, data_length=300 * analysis_rules.MIB), stamp, rules)
        is ExtractionStrategy.incremental_chunked
    )
    # The key as watermark: key ranges follow the watermark, so the log is split into ranges.
    assert choices.choose_strategy(table(rows=5_000), key, rules) is ExtractionStrategy.incremental_chunked


def test_tier_from_configurable_critical_list() -> None:
    rules = analysis_rules.AnalysisRules(critical_tables=("patient", "Payment"))
    assert rules.tier_of("patient") == 1
    assert rules.tier_of("payment") == 1
    assert rules.tier_of("definition") == rules.default_tier == 3


def _analysis(*names: str, rows: int = 10) -> schema_analysis.SchemaAnalysis:
    infos = {}
    results = {}
    for name in names:
        info = table(name, rows=rows)
        infos[name] = info
        config = TableConfig(
            primary_key=["TNum"],
            estimated_rows=rows,
            columns=["TNum"],
            column_types={"TNum": "bigint(20) not null auto_increment"},
        )
        results[name] = schema_analysis.TableAnalysis(name, config, choices.Watermark((), "tiny"))
    return schema_analysis.SchemaAnalysis(source_schema.SourceSchema("od", "mysql://root@db:3306/od", infos), results)


def test_render_is_valid_sorted_and_keeps_the_timestamp_while_content_is_unchanged() -> None:
    first = tables_yml.render_tables_yml(_analysis("zeta", "alpha"), generated_at=NOW)
    assert first.index("  alpha:") < first.index("  zeta:")
    assert "2026-01-15T12:00:00Z" in first
    assert "mysql://root@db:3306/od" in first
    parse_tables_config(yaml.safe_load(first))
    later = datetime(2026, 2, 1, tzinfo=UTC)
    assert tables_yml.render_tables_yml(_analysis("zeta", "alpha"), first, generated_at=later) == first
    changed = tables_yml.render_tables_yml(_analysis("zeta", "alpha", rows=11), first, generated_at=later)
    assert "2026-02-01T00:00:00Z" in changed
    assert "estimated_rows: 11" in changed


def test_overrides_block_is_kept_byte_for_byte() -> None:
    first = tables_yml.render_tables_yml(_analysis("alpha", "beta"), generated_at=NOW)
    hand = (
        "overrides:\n  # keep beta small: its rows are huge\n  beta:\n    batch_size: 7   # measured\n"
        "\n  alpha: {tier: 2}\n# trailing note\n"
    )
    edited = first[: first.index("\noverrides:") + 1] + hand
    regenerated = tables_yml.render_tables_yml(_analysis("alpha", "beta", rows=99), edited, generated_at=NOW)
    assert regenerated.endswith(hand)
    config = parse_tables_config(yaml.safe_load(regenerated))
    assert config.effective("beta").batch_size == 7
    assert config.effective("alpha").tier == 2


def test_extract_overrides_stops_at_the_next_top_level_key() -> None:
    text = "version: 1\noverrides:\n  a:\n    tier: 2\n# note\ntables:\n  a: {}\n"
    assert tables_yml.extract_overrides_block(text) == "overrides:\n  a:\n    tier: 2\n# note\n"
    assert tables_yml.extract_overrides_block("version: 1\ntables: {}\n") is None


def test_override_of_a_table_gone_from_the_source_is_a_clear_error() -> None:
    first = tables_yml.render_tables_yml(_analysis("alpha", "beta"), generated_at=NOW)
    edited = first[: first.index("\noverrides:") + 1] + "overrides:\n  beta:\n    tier: 2\n"
    with pytest.raises(analysis_rules.AnalysisError, match="beta"):
        tables_yml.render_tables_yml(_analysis("alpha"), edited, generated_at=NOW)


def test_compare_with_a_hand_written_config_names_lost_key_missing_watermark_and_dropped_table() -> None:
    live = table("patient", columns=(col("PatNum", "bigint(20)"), col("LName", "varchar(100)")), primary_key=())
    schema = source_schema.SourceSchema("od", "mysql://root@db:3306/od", {"patient": live})
    config = parse_tables_config(
        {
            "tables": {
                "patient": {
                    "primary_key": ["PatNum"],
                    "extraction_strategy": "incremental",
                    "incremental_columns": ["DateTStamp"],
                },
                "claim": {"primary_key": ["ClaimNum"]},
            }
        }
    )
    report = config_drift.compare_config_to_source(schema, config)
    kinds = {(i.table, i.kind.value, i.column) for i in report.items}
    assert kinds == {
        ("claim", "table_dropped", None),
        ("patient", "primary_key_lost", None),
        ("patient", "watermark_missing", "DateTStamp"),
    }
    assert report.has_drift
    rows = report.to_rows()
    assert {r["change"] for r in rows} == {"table_dropped", "primary_key_lost", "watermark_missing"}
    assert '"has_drift": true' in report.to_json()


def test_compare_reports_nothing_for_a_matching_config() -> None:
    info = table("patient", columns=(col("PatNum", "bigint(20)", extra="auto_increment"),), primary_key=("PatNum",))
    schema = source_schema.SourceSchema("od", "mysql://root@db:3306/od", {"patient": info})
    config = parse_tables_config(
        {
            "tables": {
                "patient": {
                    "primary_key": ["PatNum"],
                    "columns": ["PatNum"],
                    "column_types": {"PatNum": "bigint(20) not null auto_increment"},
                }
            }
        }
    )
    report = config_drift.compare_config_to_source(schema, config)
    assert not report.has_drift
    assert report.to_rows() == []
    assert "no drift" in report.summary()
