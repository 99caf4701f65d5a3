"""PostgreSQL DDL for loaded tables: CREATE TABLE, primary key, indexes, and the loader's own schemas."""

from __future__ import annotations

from clinicflow.core.dbapi import PgConnection
from clinicflow.core.sql import quote_ident, quote_list, quote_qualified, short_pg_ident
from clinicflow.opendental.tables.typemap import (
    Kind,
)
from clinicflow.opendental.warehouse.load_plan import RAW_SCHEMA, STAGE_SCHEMA, STATE_SCHEMA, LoadPlan


def column_definitions(plan: LoadPlan) -> str:
    parts = []
    for col in plan.columns:
        not_null = " NOT NULL" if (not col.nullable or col.name in plan.primary_key) else ""
        parts.append(f"{quote_ident(col.name, 'postgres')} {col.pg_type}{not_null}")
    return ", ".join(parts)


def pg_create_table_sql(plan: LoadPlan, schema: str) -> str:
    return f"CREATE TABLE {quote_qualified(schema, plan.table, 'postgres')} ({column_definitions(plan)})"


def _primary_key_name(plan: LoadPlan) -> str:
    return quote_ident(short_pg_ident(f"{plan.table}_pkey"), "postgres")


def primary_key_sql(plan: LoadPlan, schema: str) -> str | None:
    """ALTER TABLE ... ADD PRIMARY KEY: the key built in one statement (PostgreSQL's usual way)."""
    if not plan.primary_key:
        return None
    return (
        f"ALTER TABLE {quote_qualified(schema, plan.table, 'postgres')} ADD CONSTRAINT {_primary_key_name(plan)} "
        f"PRIMARY KEY ({quote_list(list(plan.primary_key), 'postgres')})"
    )


def primary_key_index_sql(plan: LoadPlan, schema: str) -> str | None:
    """The primary key's unique index alone; :func:`attach_primary_key_sql` makes it the key.

    Unlike ``ALTER TABLE ... ADD PRIMARY KEY`` (an exclusive lock), CREATE
    INDEX can run beside the other index builds of the same table.
    """
    if not plan.primary_key:
        return None
    return (
        f"CREATE UNIQUE INDEX {_primary_key_name(plan)} ON {quote_qualified(schema, plan.table, 'postgres')} "
        f"({quote_list(list(plan.primary_key), 'postgres')})"
    )


def attach_primary_key_sql(plan: LoadPlan, schema: str) -> str | None:
    """Promote the index of :func:`primary_key_index_sql` to the primary key (no scan: the columns are NOT NULL)."""
    if not plan.primary_key:
        return None
    return (
        f"ALTER TABLE {quote_qualified(schema, plan.table, 'postgres')} ADD CONSTRAINT {_primary_key_name(plan)} "
        f"PRIMARY KEY USING INDEX {_primary_key_name(plan)}"
    )


def index_sqls(plan: LoadPlan, schema: str) -> list[str]:
    """The source's secondary indexes, recreated (prefix indexes as expression indexes)."""
    out = []
    for index in plan.indexes:
        if index.index_type.upper() in ("FULLTEXT", "SPATIAL"):
            continue  # no btree equivalent; documented
        parts = []
        has_prefix = False
        for name, prefix in zip(index.columns, index.prefix_lengths, strict=False):
            q = quote_ident(name, "postgres")
            if prefix:
                has_prefix = True
                kind = plan.column(name).kind
                parts.append(f"(substring({q} from 1 for {int(prefix)}))" if kind in (Kind.text, Kind.binary) else q)
            else:
                parts.append(q)
        # A MySQL unique index stays unique (it is as strict or stricter in PostgreSQL),
        # except over prefixes, where only the prefix is indexed.
        unique = "UNIQUE " if index.unique and not has_prefix else ""
        name = quote_ident(short_pg_ident(f"{plan.table}__{index.name}"), "postgres")
        out.append(
            f"CREATE {unique}INDEX {name} ON {quote_qualified(schema, plan.table, 'postgres')} ({', '.join(parts)})"
        )
    return out


STATE_DDL = [
    "CREATE SCHEMA IF NOT EXISTS {state}",
    "CREATE SCHEMA IF NOT EXISTS {stage}",
    "CREATE SCHEMA IF NOT EXISTS {replaced}",
    "CREATE SCHEMA IF NOT EXISTS {raw}",
    """CREATE TABLE IF NOT EXISTS {state}.load_state (
        table_name text PRIMARY KEY,
        mode text NOT NULL,
        watermark_columns text[] NOT NULL DEFAULT '{{}}',
        watermark text[],
        source_fingerprint text,
        loaded_at timestamptz NOT NULL DEFAULT now()
    )""",
]


def ensure_schemas(
    pg_conn: PgConnection,
    *,
    raw_schema: str = RAW_SCHEMA,
    stage_schema: str = STAGE_SCHEMA,
    state_schema: str = STATE_SCHEMA,
) -> None:
    """Create the raw, staging, replaced and state schemas and the load-state table (idempotent)."""
    names = {
        "state": quote_ident(state_schema, "postgres"),
        "stage": quote_ident(stage_schema, "postgres"),
        "replaced": quote_ident(replaced_schema(stage_schema), "postgres"),
        "raw": quote_ident(raw_schema, "postgres"),
    }
    with pg_conn.cursor() as cur:
        # Concurrent first runs may race on CREATE SCHEMA; the advisory lock serialises them.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('clinicflow.ensure_schemas'))")
        for statement in STATE_DDL:
            cur.execute(statement.format(**names))
    pg_conn.commit()


def replaced_schema(stage_schema: str) -> str:
    """Where a full load's swap moves the table it replaces, until it is dropped after the commit.

    A schema of its own: the replaced table keeps its index names, which
    would clash with the new table's in raw and the staging table's in stage.
    """
    return short_pg_ident(f"{stage_schema}_replaced")
