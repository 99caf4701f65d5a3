"""What analysis chooses per table: watermark, batch size, reconcile slices, extraction strategy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from clinicflow.connectors.mysql.catalog import CatalogColumn, CatalogTable
from clinicflow.core.dbapi import Connection
from clinicflow.opendental.tables.analysis_rules import MIB, AnalysisRules
from clinicflow.opendental.tables.config import (
    ExtractionStrategy,
)
from clinicflow.opendental.tables.sampling import judge_sample, sample_columns


@dataclass(frozen=True)
class Watermark:
    columns: tuple[str, ...]  # empty: no usable watermark
    reason: str
    rejected: tuple[tuple[str, str], ...] = ()  # (column, why not)


def candidate_columns(table: CatalogTable, rules: AnalysisRules) -> list[str]:
    """Watermark candidates in preference order: edit columns, ON UPDATE columns, entry columns."""
    dated = [c for c in table.columns if c.data_type in ("timestamp", "datetime")]
    by_name = {c.name.lower(): c for c in dated}
    ordered: list[str] = []

    def add(name: str) -> None:
        if name not in ordered:
            ordered.append(name)

    for preferred in rules.edit_columns:
        if preferred.lower() in by_name:
            add(by_name[preferred.lower()].name)
    for col in dated:
        if col.on_update:
            add(col.name)
    for preferred in rules.entry_columns:
        if preferred.lower() in by_name:
            add(by_name[preferred.lower()].name)
    return ordered


def choose_watermark(conn: Connection, table: CatalogTable, rules: AnalysisRules, now: datetime) -> Watermark:
    """The first candidate the sample supports, else the auto-increment key, else none."""
    if not table.primary_key:
        return Watermark((), "no primary key: copied fully")
    candidates = candidate_columns(table, rules)
    samples = sample_columns(conn, table, candidates, rules, now)
    rejected: list[tuple[str, str]] = []
    for name in candidates:
        why_not = judge_sample(samples[name], rules)
        if why_not is None:
            sample = samples[name]
            how = "whole table" if sample.whole_table else f"newest {sample.sampled} rows"
            return Watermark((name,), f"{name}: {sample.real}/{sample.sampled} real values ({how})", tuple(rejected))
        rejected.append((name, why_not))
    key = table.auto_increment_key
    if key is not None:
        return Watermark(
            (key,), f"no usable change column: auto-increment key {key} as watermark (append-only)", tuple(rejected)
        )
    return Watermark((), "no usable change column and no auto-increment key", tuple(rejected))


def row_width(table: CatalogTable) -> int:
    """Bytes per row: the server's average when there are rows, else an estimate from the column types."""
    if table.table_rows > 0 and table.avg_row_length > 0:
        return table.avg_row_length
    return max(1, sum(_declared_width(c) for c in table.columns))


_WIDTHS = {
    "tinyint": 1,
    "smallint": 2,
    "mediumint": 3,
    "int": 4,
    "bigint": 8,
    "float": 4,
    "double": 8,
    "date": 3,
    "time": 3,
    "datetime": 5,
    "timestamp": 4,
    "year": 1,
    "bit": 8,
    "enum": 2,
    "set": 8,
    "decimal": 8,
    "tinytext": 64,
    "text": 256,
    "mediumtext": 1024,
    "longtext": 1024,
    "tinyblob": 64,
    "blob": 256,
    "mediumblob": 1024,
    "longblob": 1024,
    "json": 256,
}


def _declared_width(col: CatalogColumn) -> int:
    if col.data_type in ("char", "varchar", "binary", "varbinary"):
        match = re.search(r"\((\d+)\)", col.column_type)
        # Variable-length text is rarely full: count half of the declared width.
        return max(1, int(match.group(1)) // 2) if match else 64
    return _WIDTHS.get(col.data_type, 16)


def choose_batch_size(table: CatalogTable, rules: AnalysisRules) -> int:
    """Rows per chunk so that one chunk is about target_chunk_mb, rounded to two significant digits."""
    rows = int(rules.target_chunk_mb * MIB // row_width(table))
    rows = min(rules.max_batch_size, max(rules.min_batch_size, rows))
    magnitude: int = 10 ** max(0, len(str(rows)) - 2)
    return max(rules.min_batch_size, rows // magnitude * magnitude)


def choose_reconcile_slices(table: CatalogTable, rules: AnalysisRules) -> int:
    """A weekly sweep for keyed tables of many rows, else 0: sized each night from the table's live size.

    Not 1 (every range every night): a table of a few hundred thousand rows, or of gigabytes of
    documents, would have every value read on both servers every night; the run-time sizing
    (:meth:`clinicflow.opendental.sweep.Sweep.sized`) bounds each night's share and follows the
    table as it grows, where a number written today would not.
    """
    if table.primary_key and table.table_rows >= rules.sliced_checksum_min_rows:
        return rules.weekly_slices
    return 0


def choose_strategy(table: CatalogTable, watermark: Watermark, rules: AnalysisRules) -> ExtractionStrategy:
    size_mb = table.data_length / MIB
    if not table.primary_key or not watermark.columns:
        return ExtractionStrategy.full_table
    if table.table_rows <= rules.full_copy_max_rows and size_mb <= rules.full_copy_max_mb:
        # A few rows of large values (a small practice's scanned documents) are no tiny table:
        # a full copy would move every value whenever one row changed.
        return ExtractionStrategy.full_table
    if table.table_rows >= rules.chunked_min_rows or size_mb >= rules.chunked_min_mb:
        return ExtractionStrategy.incremental_chunked
    if watermark.columns == (table.auto_increment_key,):
        # The watermark is the key itself (append-only log): key ranges follow the
        # watermark order, so splitting into ranges is always safe, and such logs
        # (securitylog) are the tables that grow without bound.
        return ExtractionStrategy.incremental_chunked
    return ExtractionStrategy.incremental
