"""The loader's state per table (schema ``clinicflow``): mode, watermark, source fingerprint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clinicflow.connectors.mysql.checksums import checksum_table
from clinicflow.core.dbapi import Connection, Cursor, PgConnection
from clinicflow.core.sql import quote_qualified
from clinicflow.opendental.metrics import TableMode
from clinicflow.opendental.warehouse.load_plan import LOAD_STATE_TABLE, LoadPlan


@dataclass(frozen=True)
class LoadState:
    mode: str
    watermark_columns: tuple[str, ...]
    watermark: tuple[str, ...] | None
    source_fingerprint: str | None


def read_state(pg_conn: PgConnection, plan: LoadPlan) -> LoadState | None:
    with pg_conn.cursor() as cur:
        cur.execute(
            f"SELECT mode, watermark_columns, watermark, source_fingerprint FROM "
            f"{quote_qualified(plan.state_schema, LOAD_STATE_TABLE, 'postgres')} WHERE table_name = %s",
            (plan.table,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return LoadState(row[0], tuple(row[1] or ()), tuple(row[2]) if row[2] is not None else None, row[3])


def _write_state(
    cur: Cursor, plan: LoadPlan, mode: TableMode, watermark: Sequence[str] | None, fingerprint: str | None
) -> None:
    cur.execute(
        f"INSERT INTO {quote_qualified(plan.state_schema, LOAD_STATE_TABLE, 'postgres')} "
        "(table_name, mode, watermark_columns, watermark, source_fingerprint, loaded_at) "
        "VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (table_name) DO UPDATE SET mode = EXCLUDED.mode, "
        "watermark_columns = EXCLUDED.watermark_columns, watermark = EXCLUDED.watermark, "
        "source_fingerprint = EXCLUDED.source_fingerprint, loaded_at = EXCLUDED.loaded_at",
        (
            plan.table,
            mode,
            list(plan.keyset_columns if plan.incremental_columns else ()),
            list(watermark) if watermark is not None else None,
            fingerprint,
        ),
    )


def raw_table_columns(pg_conn: PgConnection, schema: str, table: str) -> dict[str, str] | None:
    """Column name → format_type() of an existing PostgreSQL table, or None if it does not exist."""
    with pg_conn.cursor() as cur:
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum",
            (schema, table),
        )
        rows = cur.fetchall()
    return {r[0]: r[1] for r in rows} if rows else None


def source_fingerprint(mysql_conn: Connection, plan: LoadPlan) -> str:
    """Content fingerprint of a source table (CHECKSUM TABLE) plus the mapping: equal → nothing to reload."""
    return f"{checksum_table(mysql_conn, plan.table) or 'none'}:{plan.mapping_signature}"
