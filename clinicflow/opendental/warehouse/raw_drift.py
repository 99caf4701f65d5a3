"""Column drift between the load plan and the table already in ``raw``: compatible changes applied, others refused."""

from __future__ import annotations

from dataclasses import dataclass, field

from clinicflow.core.dbapi import PgConnection
from clinicflow.core.sql import quote_ident, quote_qualified
from clinicflow.opendental.tables.typemap import (
    is_compatible_change,
    normalize_pg_type,
)
from clinicflow.opendental.warehouse.load_errors import SchemaDriftError
from clinicflow.opendental.warehouse.load_plan import LoadPlan


@dataclass
class DriftResult:
    added_columns: list[str] = field(default_factory=list)
    widened_columns: list[str] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)
    # Columns whose values must be read again, not converted in place: TIMESTAMP columns loaded
    # as naive server-zone text before they became UTC instants (timestamptz).
    reload_columns: list[str] = field(default_factory=list)

    @property
    def needs_backfill(self) -> bool:
        return bool(self.added_columns)


def compare_raw_columns(plan: LoadPlan, existing: dict[str, str]) -> DriftResult:
    """Classify differences between the planned columns and raw's; raise on an incompatible type change."""
    result = DriftResult()
    problems = []
    for col in plan.columns:
        old = existing.get(col.name)
        if old is None:
            result.added_columns.append(col.name)
        elif normalize_pg_type(old) != normalize_pg_type(col.pg_type):
            if _naive_to_instant(old, col.pg_type):
                result.reload_columns.append(col.name)
            elif is_compatible_change(old, col.pg_type):
                result.widened_columns.append(col.name)
            else:
                problems.append(
                    f"column {col.name!r} is {old} in {plan.raw_schema}.{plan.table} but the source now "
                    f"has {col.source.column_type} (→ {col.pg_type})"
                )
    result.dropped_columns = [name for name in existing if name not in {c.name for c in plan.columns}]
    if problems:
        raise SchemaDriftError(
            f"table {plan.table!r}: incompatible type change: "
            + "; ".join(problems)
            + "; not loaded (run with full_refresh to accept the new type)"
        )
    return result


def _naive_to_instant(old_pg_type: str, new_pg_type: str) -> bool:
    old, new = normalize_pg_type(old_pg_type), normalize_pg_type(new_pg_type)
    return old.startswith("timestamp") and not old.startswith("timestamptz") and new.startswith("timestamptz")


def apply_drift(pg_conn: PgConnection, plan: LoadPlan, drift: DriftResult) -> None:
    """ALTER raw for added and safely widened columns (one transaction)."""
    target = quote_qualified(plan.raw_schema, plan.table, "postgres")
    with pg_conn.cursor() as cur:
        for name in drift.added_columns:
            col = plan.column(name)
            cur.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(name, 'postgres')} {col.pg_type}")
        for name in drift.widened_columns:
            col = plan.column(name)
            q = quote_ident(name, "postgres")
            cur.execute(f"ALTER TABLE {target} ALTER COLUMN {q} TYPE {col.pg_type} USING {q}::{col.pg_type}")
    pg_conn.commit()
