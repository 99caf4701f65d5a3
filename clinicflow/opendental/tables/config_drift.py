"""Drift between tables.yml and the live source: missing tables, changed keys, watermarks that no longer work."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.mysql.catalog import CatalogColumn, CatalogTable
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.core.logs import get_logger
from clinicflow.opendental.tables.analysis_rules import AnalysisRules
from clinicflow.opendental.tables.config import (
    TablesConfig,
)
from clinicflow.opendental.tables.sampling import probe_watermark
from clinicflow.opendental.tables.schema_analysis import _is_connection_error, rejected_table_name
from clinicflow.opendental.tables.source_schema import SourceSchema, definition, read_schema_with
from clinicflow.opendental.tables.typemap import carry_problem


class DriftKind(str, Enum):  # noqa: UP042 - f-strings print "Cls.member"; StrEnum would change messages
    table_added = "table_added"
    table_dropped = "table_dropped"
    column_added = "column_added"
    column_dropped = "column_dropped"
    column_retyped = "column_retyped"
    primary_key_lost = "primary_key_lost"
    primary_key_changed = "primary_key_changed"
    watermark_missing = "watermark_missing"
    watermark_stalled = "watermark_stalled"
    boolean_column_invalid = "boolean_column_invalid"
    column_not_carriable = "column_not_carriable"


@dataclass(frozen=True)
class DriftItem:
    table: str
    kind: DriftKind
    column: str | None
    expected: str | None  # what tables.yml says
    actual: str | None  # what the source has
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "change": self.kind.value,
            "column": self.column,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }


@dataclass
class DriftReport:
    """Differences between tables.yml and the live source. Empty means no drift."""

    source: str
    tables_checked: int
    items: list[DriftItem] = field(default_factory=list)

    @property
    def has_drift(self) -> bool:
        return bool(self.items)

    def tables(self) -> list[str]:
        return sorted({item.table for item in self.items})

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per change, for a Prefect table artifact or a rich table."""
        return [item.to_dict() for item in self.items]

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "tables_checked": self.tables_checked,
                "has_drift": self.has_drift,
                "changes": self.to_rows(),
            },
            indent=2,
            sort_keys=False,
        )

    def summary(self) -> str:
        if not self.has_drift:
            return f"no drift: {self.tables_checked} tables in tables.yml match {self.source}"
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.kind.value] = counts.get(item.kind.value, 0) + 1
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        return f"drift in {len(self.tables())} table(s) against {self.source}: {detail}"


def compare_config_to_source(
    schema: SourceSchema,
    config: TablesConfig,
    probes: Mapping[str, str | None] | None = None,
    exclude: Iterable[str] = (),
) -> DriftReport:
    """Compare tables.yml with a read schema. ``probes``: live watermark maxima per table (see check_drift)."""
    excluded = {name.lower() for name in exclude}
    report = DriftReport(source=schema.address, tables_checked=len(config.tables))
    items = report.items
    for name in sorted(set(schema.tables) - set(config.tables)):
        if name.lower() in excluded or rejected_table_name(name) is not None:
            continue  # left out on purpose, or a name tables.yml cannot hold (analyze-schema warns about it)
        info = schema.tables[name]
        items.append(
            DriftItem(
                name,
                DriftKind.table_added,
                None,
                None,
                f"{len(info.columns)} columns",
                f"table {name!r} is in the source but not in tables.yml: it is not copied",
            )
        )
    for name in sorted(config.tables):
        if name not in schema.tables:
            items.append(
                DriftItem(
                    name,
                    DriftKind.table_dropped,
                    None,
                    "present",
                    None,
                    f"table {name!r} is in tables.yml but no longer in the source",
                )
            )
            continue
        items.extend(_compare_table(schema.tables[name], name, config, (probes or {}).get(name, _NO_PROBE)))
    items.sort(key=lambda item: (item.table, list(DriftKind).index(item.kind), item.column or ""))
    return report


_NO_PROBE = object()


def _compare_table(info: CatalogTable, name: str, config: TablesConfig, probe: Any) -> list[DriftItem]:
    base = config.tables[name]
    effective = config.effective(name)
    items: list[DriftItem] = []
    live = {c.name.lower(): c for c in info.columns}

    watermarks = {c.lower() for c in effective.incremental_columns}
    recorded = list(base.columns or [])
    recorded_lower = {c.lower() for c in recorded}
    if base.columns is not None:
        for new_col in info.columns:
            if new_col.name.lower() not in recorded_lower:
                items.append(
                    DriftItem(
                        name,
                        DriftKind.column_added,
                        new_col.name,
                        None,
                        definition(new_col),
                        f"{name}.{new_col.name} ({definition(new_col)}) is new in the source",
                    )
                )
        for col_name in recorded:
            if col_name.lower() not in live:
                expected = (base.column_types or {}).get(col_name)
                impact = (
                    ": it is the incremental column, the table cannot be copied incrementally"
                    if col_name.lower() in watermarks
                    else ""
                )
                items.append(
                    DriftItem(
                        name,
                        DriftKind.column_dropped,
                        col_name,
                        expected,
                        None,
                        f"{name}.{col_name} is no longer in the source{impact}",
                    )
                )
    # A hand-written tables.yml may list no columns: still name a missing watermark column.
    for col_name in effective.incremental_columns:
        if col_name.lower() not in live and col_name.lower() not in recorded_lower:
            items.append(
                DriftItem(
                    name,
                    DriftKind.watermark_missing,
                    col_name,
                    "present",
                    None,
                    f"incremental column {name}.{col_name} is not in the source",
                )
            )
    for col_name, expected in sorted((base.column_types or {}).items()):
        col = live.get(col_name.lower())
        if col is not None and definition(col) != expected:
            items.append(
                DriftItem(
                    name,
                    DriftKind.column_retyped,
                    col_name,
                    expected,
                    definition(col),
                    f"{name}.{col_name} changed from {expected!r} to {definition(col)!r}",
                )
            )

    for live_col in info.columns:
        problem = carry_problem(live_col.name, live_col.data_type, live_col.column_type)
        if problem is not None:
            items.append(
                DriftItem(
                    name,
                    DriftKind.column_not_carriable,
                    live_col.name,
                    None,
                    live_col.column_type,
                    f"table {name!r}: {problem}",
                )
            )
    for col_name in effective.boolean_columns:
        col = live.get(col_name.lower())
        if col is None:
            items.append(
                DriftItem(
                    name,
                    DriftKind.boolean_column_invalid,
                    col_name,
                    "tinyint(1)",
                    None,
                    f"boolean column {name}.{col_name} is not in the source",
                )
            )
        elif not _is_tinyint1(col):
            items.append(
                DriftItem(
                    name,
                    DriftKind.boolean_column_invalid,
                    col_name,
                    "tinyint(1)",
                    col.column_type,
                    f"boolean column {name}.{col_name} is {col.column_type}, not tinyint(1)",
                )
            )

    expected_pk = list(effective.primary_key)
    actual_pk = list(info.primary_key)
    if expected_pk and not actual_pk:
        items.append(
            DriftItem(
                name,
                DriftKind.primary_key_lost,
                None,
                ", ".join(expected_pk),
                None,
                f"table {name!r} lost its primary key ({', '.join(expected_pk)})",
            )
        )
    elif [c.lower() for c in expected_pk] != [c.lower() for c in actual_pk]:
        items.append(
            DriftItem(
                name,
                DriftKind.primary_key_changed,
                None,
                ", ".join(expected_pk) or None,
                ", ".join(actual_pk) or None,
                f"primary key of {name!r} is ({', '.join(actual_pk)}), tables.yml says ({', '.join(expected_pk)})",
            )
        )

    if probe is not _NO_PROBE and probe is not None and base.observed_watermark is not None:
        grown = (
            info.table_rows > base.estimated_rows
            if info.exact_row_count
            else info.table_rows > base.estimated_rows * 1.1 + 100
        )
        if grown and str(probe) == base.observed_watermark:
            column = base.incremental_columns[0]
            added = info.table_rows - base.estimated_rows
            items.append(
                DriftItem(
                    name,
                    DriftKind.watermark_stalled,
                    column,
                    f"> {base.observed_watermark}",
                    str(probe),
                    f"{name}.{column} stopped moving: still {base.observed_watermark} while about {added} rows were "
                    "added since the analysis; new rows may not be copied incrementally",
                )
            )
    return items


def _is_tinyint1(col: CatalogColumn) -> bool:
    # MySQL 8 prints tinyint without a width except tinyint(1); MariaDB always prints it.
    return col.data_type == "tinyint" and col.column_type.lower().split()[0] == "tinyint(1)"


def live_probes(
    conn: Connection, schema: SourceSchema, config: TablesConfig, rules: AnalysisRules | None = None
) -> dict[str, str | None]:
    """Current watermark maxima for tables whose tables.yml records an observed watermark."""
    rules = rules or AnalysisRules()
    probes: dict[str, str | None] = {}
    for name, table_config in sorted(config.tables.items()):
        info = schema.tables.get(name)
        if info is None or table_config.observed_watermark is None or not table_config.incremental_columns:
            continue
        column = info.column(table_config.incremental_columns[0])
        if column is None:
            continue
        try:
            probes[name] = probe_watermark(conn, info, column.name, rules)
        except Exception as exc:  # a failing probe skips only this check
            if _is_connection_error(exc):
                raise
            get_logger("clinicflow.schema_analysis").warning(
                "table %r: watermark probe failed (%s); stalled-watermark check skipped", name, type(exc).__name__
            )
    return probes


def check_drift(
    server: MySQLServerLike, config: TablesConfig, rules: AnalysisRules | None = None, exclude: Iterable[str] = ()
) -> DriftReport:
    """Compare tables.yml with the live source: what the nightly flow runs first."""
    with connected(server) as conn:
        schema = read_schema_with(conn, server.database, server.describe())
        probes = live_probes(conn, schema, config, rules)
    return compare_config_to_source(schema, config, probes, exclude)
