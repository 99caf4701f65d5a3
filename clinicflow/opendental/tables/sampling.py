"""Bounded samples of candidate watermark columns, and the verdict on each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clinicflow.connectors.mysql.catalog import CatalogTable
from clinicflow.connectors.mysql.sessions import catalog_text
from clinicflow.core.dbapi import Connection
from clinicflow.core.sql import quote_ident, quote_list
from clinicflow.opendental.tables.analysis_rules import UNSET_DATE_LIMIT, AnalysisRules


@dataclass(frozen=True)
class ColumnSample:
    """What a bounded sample says about one candidate column."""

    column: str
    sampled: int  # rows looked at
    real: int  # not NULL, not a zero date, not '0001-01-01'
    out_of_range: int  # real values before earliest_plausible or in the future
    min_real: str | None
    max_real: str | None
    whole_table: bool  # the sample was the whole table

    @property
    def real_share(self) -> float:
        return self.real / self.sampled if self.sampled else 0.0


def _tail_source(table: CatalogTable, columns: Sequence[str], limit: int | None) -> str:
    """A bounded row source: the newest ``limit`` rows along the primary key index (or all rows)."""
    select = f"SELECT {quote_list(list(columns), 'mysql')} FROM {quote_ident(table.name, 'mysql')}"
    if limit is None:
        return select
    if table.primary_key:
        # Without the hint MariaDB may prefer a full scan plus filesort for ORDER BY ... LIMIT.
        order = ", ".join(f"{quote_ident(c, 'mysql')} DESC" for c in table.primary_key)
        return f"{select} FORCE INDEX (PRIMARY) ORDER BY {order} LIMIT {int(limit)}"
    return f"{select} LIMIT {int(limit)}"


def sample_columns(
    conn: Connection, table: CatalogTable, columns: Sequence[str], rules: AnalysisRules, now: datetime
) -> dict[str, ColumnSample]:
    """Sample candidate columns of one table in one bounded query."""
    if not columns:
        return {}
    whole = table.table_rows <= rules.small_table_rows
    source = _tail_source(table, columns, None if whole else rules.sample_rows)
    latest = (now + rules.future_tolerance).strftime("%Y-%m-%d %H:%M:%S")
    parts = ["COUNT(*)"]
    params: list[Any] = []
    for name in columns:
        col = quote_ident(name, "mysql")
        real = f"({col} >= %s)"
        parts.append(f"SUM({real})")
        parts.append(f"SUM({real} AND ({col} < %s OR {col} > %s))")
        parts.append(f"CAST(MIN(CASE WHEN {real} THEN {col} END) AS CHAR)")
        parts.append(f"CAST(MAX(CASE WHEN {real} THEN {col} END) AS CHAR)")
        params += [
            UNSET_DATE_LIMIT,
            UNSET_DATE_LIMIT,
            rules.earliest_plausible,
            latest,
            UNSET_DATE_LIMIT,
            UNSET_DATE_LIMIT,
        ]
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(parts)} FROM ({source}) AS sample_rows", params)
        row = cur.fetchone()
    sampled = int(row[0] or 0)
    samples = {}
    for i, name in enumerate(columns):
        real, out, lo, hi = row[1 + 4 * i : 5 + 4 * i]
        samples[name] = ColumnSample(
            name, sampled, int(real or 0), int(out or 0), catalog_text(lo), catalog_text(hi), whole
        )
    return samples


def judge_sample(sample: ColumnSample, rules: AnalysisRules) -> str | None:
    """None when the sample supports the column as a watermark, else the reason it does not."""
    if sample.sampled == 0:
        return None  # empty table: no evidence against a column the schema marks as a change column
    if sample.out_of_range:
        return (
            f"{sample.out_of_range} of {sample.sampled} sampled values outside "
            f"[{rules.earliest_plausible}, now + {rules.future_tolerance}] "
            f"(min {sample.min_real}, max {sample.max_real})"
        )
    if sample.real_share < rules.min_real_share:
        return (
            f"only {sample.real} of {sample.sampled} sampled rows hold a real date "
            f"(NULL, zero dates and 0001-01-01 do not count; need {rules.min_real_share:.0%})"
        )
    return None


def probe_watermark(conn: Connection, table: CatalogTable, column: str, rules: AnalysisRules) -> str | None:
    """The highest value of a watermark column, found without a full scan of a large table.

    An index lookup when the column leads an index (or is the key), the whole
    table when it is small, else the newest ``sample_rows`` rows by key. None
    when none of these is bounded (large table, no key, no index).
    """
    col = quote_ident(column, "mysql")
    indexed = column in table.index_leading or (table.primary_key[:1] == (column,))
    if indexed or table.table_rows <= rules.small_table_rows:
        source = quote_ident(table.name, "mysql")
    elif table.primary_key:
        source = f"({_tail_source(table, [column], rules.sample_rows)}) AS sample_rows"
    else:
        return None
    info = table.column(column)
    is_date = info is not None and info.data_type in ("timestamp", "datetime", "date")
    where = f" WHERE {col} >= %s" if is_date else ""
    with conn.cursor() as cur:
        cur.execute(f"SELECT CAST(MAX({col}) AS CHAR) FROM {source}{where}", (UNSET_DATE_LIMIT,) if is_date else ())
        row = cur.fetchone()
    return catalog_text(row[0]) if row else None
