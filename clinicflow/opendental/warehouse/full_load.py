"""Full load: COPY into a staging table, build key and indexes, then one transaction swaps it into ``raw``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.connections import connected, transaction
from clinicflow.connectors.mysql import catalog
from clinicflow.connectors.mysql.sessions import catalog_text
from clinicflow.core.dbapi import Connection, PgConnection
from clinicflow.core.sql import quote_ident, quote_qualified
from clinicflow.opendental.chunks import (
    bounded_mark,
    clock_bound,
    clustered_by_key,
    keyset_max,
    ranges_from_boundaries,
    walk_boundaries,
)
from clinicflow.opendental.tables.typemap import Kind
from clinicflow.opendental.warehouse.copy_stream import CopyStats, stream_copy
from clinicflow.opendental.warehouse.ddl import (
    attach_primary_key_sql,
    index_sqls,
    pg_create_table_sql,
    primary_key_index_sql,
    replaced_schema,
)
from clinicflow.opendental.warehouse.load_errors import LoadError
from clinicflow.opendental.warehouse.load_plan import STAGE_SCHEMA, LoadPlan
from clinicflow.opendental.warehouse.load_state import _write_state

# Sort memory of a table's index builds together (split between the builds running at once).
INDEX_BUILD_MEMORY_MB = 256


INDEX_BUILD_MIN_MEMORY_MB = 64


INDEX_BUILD_CONNECTIONS = 4


def stage_target(plan: LoadPlan) -> str:
    return quote_qualified(plan.stage_schema, plan.table, "postgres")


def replaced_target(plan: LoadPlan) -> str:
    return quote_qualified(replaced_schema(plan.stage_schema), plan.table, "postgres")


def drop_replaced_leftovers(pg_conn: PgConnection, stage_schema: str = STAGE_SCHEMA) -> list[str]:
    """Drop the replaced tables that crashed loads left aside (each a full copy of an old table); their names.

    Once per run: a table now loaded incrementally would otherwise keep its
    leftover until its next full load. Harmless beside a running load: a swap's
    move is invisible until its commit, and its own drop is ``IF EXISTS``.
    """
    schema = replaced_schema(stage_schema)
    with pg_conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,))
        names = [r[0] for r in cur.fetchall()]
        for name in names:
            cur.execute(f"DROP TABLE IF EXISTS {quote_qualified(schema, name, 'postgres')}")
    pg_conn.commit()
    return names


def prepare_stage(pg_conn: PgConnection, plan: LoadPlan) -> None:
    """(Re)create the empty staging table: no key or index yet, they are built once after the COPY.

    Also removes what a crashed earlier load left: its staging table, and the
    replaced copy a crash between the swap and its drop kept.
    """
    with pg_conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {replaced_target(plan)}")
        cur.execute(f"DROP TABLE IF EXISTS {stage_target(plan)}")
        cur.execute(pg_create_table_sql(plan, plan.stage_schema))
    pg_conn.commit()


def load_stage_chunk(
    mysql_stream_conn: Connection,
    pg_conn: PgConnection,
    plan: LoadPlan,
    predicate: str = "1=1",
    params: Sequence[Any] = (),
    *,
    mysql_server: Any = None,
) -> CopyStats:
    """COPY one chunk of the source into the staging table and commit it."""
    try:
        with pg_conn.cursor() as cur:
            stats = stream_copy(
                mysql_stream_conn, cur, plan, stage_target(plan), predicate, params, mysql_server=mysql_server
            )
        pg_conn.commit()
    except BaseException:
        pg_conn.rollback()
        raise
    return stats


def current_keyset_max(mysql_conn: Connection, plan: LoadPlan) -> tuple[str, ...] | None:
    """The highest (incremental columns..., key) in the source now: the watermark a full load starts from."""
    if not plan.incremental_columns:
        return None
    row = keyset_max(mysql_conn, plan.table, plan.keyset_columns)
    if not row:
        return None
    mark = [catalog_text(v) or "" for v in row]
    first = plan.column(plan.keyset_columns[0])
    if first.kind in (Kind.datetime, Kind.instant) and len(plan.keyset_columns) > 1:
        mark = bounded_mark(mark, clock_bound(mysql_conn, wall_clock=first.kind is Kind.datetime)) or mark
    return tuple(mark)


def _nul_note(columns: Sequence[str], nul_columns: Collection[str]) -> str:
    """Why a key that is unique in MySQL is not in PostgreSQL: NUL bytes removed from its text columns."""
    stripped = [c for c in columns if c in nul_columns]
    if not stripped:
        return ""
    return (
        f"; keys that differ only by NUL bytes collided once the NUL bytes were removed (PostgreSQL text "
        f"cannot hold them) in column(s) {', '.join(stripped)}"
    )


def build_stage_indexes(
    connect: Callable[[], Any],
    plan: LoadPlan,
    *,
    connections: int = INDEX_BUILD_CONNECTIONS,
    nul_columns: Collection[str] = (),
) -> None:
    """Build the primary key's index and the secondary indexes of the staging table, side by side.

    Each build runs on its own connection (``connect()``), at most
    ``connections`` at a time, each with an equal share of
    ``INDEX_BUILD_MEMORY_MB`` for its sort. Why side by side: at once they take
    less time than one after the other, even with PostgreSQL's parallel workers
    (they share the heap scans, and the serial parts of each build overlap;
    figures: bench/results/notes-from-comments.md). A failed build
    (duplicate key) raises; the staging table is then dropped by the caller,
    and ``raw`` keeps its previous content.
    """
    statements = [
        sql for sql in [primary_key_index_sql(plan, plan.stage_schema), *index_sqls(plan, plan.stage_schema)] if sql
    ]
    if not statements:
        return
    built = [i for i in plan.indexes if i.index_type.upper() not in ("FULLTEXT", "SPATIAL")]
    index_of_statement = dict(zip(index_sqls(plan, plan.stage_schema), built, strict=False))
    workers = max(1, min(connections, len(statements)))
    memory_mb = max(INDEX_BUILD_MIN_MEMORY_MB, INDEX_BUILD_MEMORY_MB // workers)

    def build(statement: str) -> None:
        import psycopg2

        with connected(connect) as conn:
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    # Index builds sort in memory up to this (server side, this session only).
                    cur.execute(f"SET maintenance_work_mem = '{memory_mb}MB'")
                    cur.execute(statement)
            except psycopg2.errors.UniqueViolation as exc:
                if statement == primary_key_index_sql(plan, plan.stage_schema):
                    # DETAIL names the duplicated key value: a key, so it may be shown.
                    detail = (getattr(getattr(exc, "diag", None), "message_detail", None) or "duplicated key").rstrip(
                        "."
                    )
                    note = _nul_note(plan.primary_key, nul_columns)
                    where = "in PostgreSQL" if note else "in the source"
                    raise LoadError(
                        f"table {plan.table!r}: the primary key is not unique {where} "
                        f"({', '.join(plan.primary_key)}): {detail}{note}"
                    ) from None
                # Another unique index: its values may be patient data, so they are withheld.
                index = index_of_statement.get(statement)
                note = _nul_note(index.columns, nul_columns) if index is not None else ""
                raise LoadError(
                    f"table {plan.table!r}: a unique index is not unique in PostgreSQL "
                    f"({statement.split(' ON ')[0].split()[-1]}); values withheld{note}"
                ) from None

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clinicflow-index") as pool:
        # Every build finishes (or fails) before this returns; the first failure is raised.
        for future in [pool.submit(build, statement) for statement in statements]:
            future.result()


def finish_full_load(
    pg_conn: PgConnection, plan: LoadPlan, *, watermark: Sequence[str] | None, fingerprint: str | None
) -> bool:
    """Attach the primary key (its index built by :func:`build_stage_indexes`) and swap the staging table into raw.

    The table replaced is moved aside, not dropped: a DROP removes its files
    at COMMIT, while the swap's lock keeps every reader of raw.<t> waiting
    (longer the larger the table).
    Returns True when a table was replaced; dropping :func:`replaced_target`
    after the commit removes it, with no reader waiting.
    """
    stage = stage_target(plan)
    target = quote_qualified(plan.raw_schema, plan.table, "postgres")
    try:
        with pg_conn.cursor() as cur:
            attach = attach_primary_key_sql(plan, plan.stage_schema)
            if attach:
                cur.execute(attach)
            # No ANALYZE here: autovacuum analyzes a freshly filled table within a minute (see docs/loading.md).
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (target,))
            replacing = bool(cur.fetchone()[0])
            if replacing:
                # A view on raw.<t> would follow the moved table: refuse as DROP would, before
                # anything moves. The DROP is rolled back with its savepoint (no file is touched).
                cur.execute("SAVEPOINT cf_dependents")
                cur.execute(f"DROP TABLE {target} RESTRICT")
                cur.execute("ROLLBACK TO SAVEPOINT cf_dependents")
                cur.execute(
                    f"ALTER TABLE {target} SET SCHEMA {quote_ident(replaced_schema(plan.stage_schema), 'postgres')}"
                )
            # Readers of raw.<t> wait on this lock for the instant of the swap and
            # then see the new table; nobody sees a partly loaded one.
            cur.execute(f"ALTER TABLE {stage} SET SCHEMA {quote_ident(plan.raw_schema, 'postgres')}")
            _write_state(cur, plan, "full", watermark, fingerprint)
        pg_conn.commit()
    except BaseException as exc:
        pg_conn.rollback()
        import psycopg2

        if isinstance(exc, psycopg2.errors.DependentObjectsStillExist):
            raise LoadError(
                f"table {plan.table!r}: cannot replace {plan.raw_schema}.{plan.table}: other objects "
                f"(views) depend on it: {str(exc).strip().splitlines()[-1]}"
            ) from None
        raise
    return replacing


def drop_table(connect: Callable[[], Any], target: str) -> None:
    """``DROP TABLE IF EXISTS target`` (a quoted, qualified name) on a connection of its own, committed."""
    with transaction(connect) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {target}")


@dataclass(frozen=True)
class Chunk:
    """One unit of a full load: a MySQL predicate and its parameters."""

    label: str
    predicate: str = "1=1"
    params: tuple[Any, ...] = ()


def full_load_chunks(mysql_conn: Connection, plan: LoadPlan) -> list[Chunk]:
    """Key ranges of ``batch_size`` keys where they read cheaply, else one streamed table scan.

    Key ranges (the chunk planner) for a single integer key on a clustered
    engine (InnoDB), copied in parallel and retried one by one. A MyISAM or
    Aria table is read in one table scan instead: there a key range reads row
    by row, slower than one scan (figures: bench/results/notes-from-comments.md).
    A full load starts over from an empty staging table whatever failed, so one
    chunk loses no resumability; tables still load side by side. One chunk is
    memory-bounded too: rows are streamed, never collected.
    """
    if (
        len(plan.primary_key) == 1
        and plan.column(plan.primary_key[0]).kind is Kind.integer
        and clustered_by_key(catalog.read_table(mysql_conn, plan.table, where="replication").engine)
    ):
        key = plan.primary_key[0]
        boundaries = walk_boundaries(mysql_conn, quote_ident(plan.table, "mysql"), key, plan.batch_size, "mysql")
        chunks = []
        for key_range in ranges_from_boundaries(boundaries):
            predicate, params = key_range.predicate(key, "mysql")
            chunks.append(Chunk(key_range.label, predicate, tuple(params)))
        return chunks
    return [Chunk("all")]
