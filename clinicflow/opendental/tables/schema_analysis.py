"""Schema analysis: one table's settings, and the whole source analysed into tables.yml's contents."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.mysql.catalog import CatalogTable
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.core.logs import get_logger
from clinicflow.core.sql import IdentifierError, validate_table_name
from clinicflow.opendental.tables.analysis_rules import MIB, AnalysisError, AnalysisRules
from clinicflow.opendental.tables.choices import (
    Watermark,
    choose_batch_size,
    choose_reconcile_slices,
    choose_strategy,
    choose_watermark,
)
from clinicflow.opendental.tables.config import (
    ExtractionStrategy,
    TableConfig,
    reserved_name_error,
)
from clinicflow.opendental.tables.sampling import probe_watermark
from clinicflow.opendental.tables.source_schema import SourceSchema, definition, read_schema_with
from clinicflow.opendental.tables.typemap import carry_problem


@dataclass(frozen=True)
class TableAnalysis:
    name: str
    config: TableConfig
    watermark: Watermark  # the best watermark, even when the table is small enough to copy fully
    error: str | None = None  # the table could not be sampled; it is copied fully

    @property
    def reason(self) -> str:
        if self.error:
            return self.error
        config = self.config
        if config.extraction_strategy is ExtractionStrategy.full_table and self.watermark.columns:
            return f"full copy: {config.estimated_rows} rows (tiny); watermark if it grows: {self.watermark.reason}"
        return self.watermark.reason


@dataclass(frozen=True)
class SchemaAnalysis:
    schema: SourceSchema
    tables: Mapping[str, TableAnalysis]
    # Source tables left out of tables.yml, with why: excluded, or a name tables.yml cannot hold.
    skipped: Mapping[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        return {name: t.error for name, t in self.tables.items() if t.error}

    def table_configs(self) -> dict[str, TableConfig]:
        return {name: t.config for name, t in self.tables.items()}

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, t in self.tables.items():
            rows.append(
                {
                    "table": name,
                    "strategy": t.config.extraction_strategy.value,
                    "watermark": ", ".join(t.config.incremental_columns) or "-",
                    "tier": t.config.tier,
                    "rows": t.config.estimated_rows,
                    "batch_size": t.config.batch_size,
                    "reason": t.reason,
                }
            )
        return rows


def analyze_table(conn: Connection, table: CatalogTable, rules: AnalysisRules, now: datetime) -> TableAnalysis:
    """Choose the settings of one table. A failing sample query degrades that table to a full copy."""
    error = None
    observed = None
    try:
        watermark = choose_watermark(conn, table, rules, now)
        strategy = choose_strategy(table, watermark, rules)
        if strategy is not ExtractionStrategy.full_table:
            observed = probe_watermark(conn, table, watermark.columns[0], rules)
    except Exception as exc:  # recorded per table, the analysis goes on
        if _is_connection_error(exc):
            raise
        error = f"table {table.name!r}: sampling failed ({type(exc).__name__}: {exc}); copied fully"
        watermark = Watermark((), "sampling failed")
        strategy = ExtractionStrategy.full_table
    # A full copy uses no watermark: record none, so the file says what runs.
    incremental_columns = list(watermark.columns) if strategy is not ExtractionStrategy.full_table else []
    config = TableConfig(
        primary_key=list(table.primary_key),
        extraction_strategy=strategy,
        incremental_columns=incremental_columns,
        batch_size=choose_batch_size(table, rules),
        tier=rules.tier_of(table.name),
        estimated_rows=table.table_rows,
        estimated_size_mb=round(table.data_length / MIB, 3),
        observed_watermark=observed,
        columns=[c.name for c in table.columns],
        column_types={c.name: definition(c) for c in table.columns},
        reconcile_slices=choose_reconcile_slices(table, rules),
    )
    # A column the load cannot carry is named now, not on the night (the table is still written).
    problems = [p for c in table.columns if (p := carry_problem(c.name, c.data_type, c.column_type)) is not None]
    if problems:
        error = "; ".join(filter(None, [error, f"table {table.name!r}: " + "; ".join(problems)]))
    return TableAnalysis(table.name, config, watermark, error)


def _is_connection_error(exc: BaseException) -> bool:
    from clinicflow.core.retry import is_transient

    return is_transient(exc)


def rejected_table_name(name: str) -> str | None:
    """Why tables.yml cannot hold a table of this name (invalid, reserved, too long), or None."""
    try:
        validate_table_name(name)
    except IdentifierError as exc:
        return str(exc)
    return reserved_name_error(name)


def skipped_tables(schema: SourceSchema, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Source tables the analysis leaves out of tables.yml, each with the reason."""
    excluded = {name.lower() for name in exclude}
    skipped = {}
    for name in schema.tables:
        if name.lower() in excluded:
            skipped[name] = "excluded"
        elif (reason := rejected_table_name(name)) is not None:
            skipped[name] = f"name not allowed in tables.yml: {reason}"
    return skipped


def analyze_schema_with(
    conn: Connection,
    schema: SourceSchema,
    rules: AnalysisRules | None = None,
    now: datetime | None = None,
    exclude: Iterable[str] = (),
) -> SchemaAnalysis:
    rules = rules or AnalysisRules()
    now = now or datetime.now(UTC)
    log = get_logger("clinicflow.schema_analysis")
    skipped = skipped_tables(schema, exclude)
    for name, reason in skipped.items():
        if reason != "excluded":
            log.warning("table %r skipped (not copied): %s", name, reason)
    results = {}
    for name, table in sorted(schema.tables.items()):
        if name in skipped:
            continue
        result = analyze_table(conn, table, rules, now)
        if result.error:
            log.error(result.error)
        results[name] = result
    return SchemaAnalysis(schema, results, skipped)


def analyze_source(
    server: MySQLServerLike,
    rules: AnalysisRules | None = None,
    now: datetime | None = None,
    exclude: Iterable[str] = (),
) -> SchemaAnalysis:
    """Read the schema of the block's database and choose every table's settings (``exclude``: names left out)."""
    with connected(server) as conn:
        schema = read_schema_with(conn, server.database, server.describe())
        if not schema.tables:
            raise AnalysisError(f"{server.describe()}: database has no tables (wrong database name?)")
        analysis = analyze_schema_with(conn, schema, rules, now, exclude)
        if not analysis.tables:
            raise AnalysisError(f"{server.describe()}: every table was skipped or excluded; nothing to write")
        return analysis
