"""Verification of a loaded table against the replication database, and its reconciliation.

Verification computes, on BOTH servers, per primary-key range: the row count, a key sum and a checksum
(sum of the first 60 bits of each row's MD5) over a canonical text form of the row, the same text on both
sides (:mod:`.verify_canonical`; jsonb is compared for presence only, because
PostgreSQL normalises JSON text). The ranges come from the one chunk planner (boundaries sampled from the
replica's key, ~100 rows each) and are aggregated in one pass per side (:mod:`clinicflow.opendental.reconcile`).
Ranges that differ are compared key by key and reported with example keys.

Reconciliation (:func:`reconcile_raw`, every night by default) repairs what
the comparison finds: each differing range is re-read from the replica and
merged into raw in one transaction (deleted rows removed, missing and changed
rows written). Memory is bounded by the range groups, and a kill loses
nothing: the next night compares again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clinicflow.connectors.mysql.sessions import catalog_name, catalog_text
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection, PgConnection
from clinicflow.core.sql import Dialect, quote_ident, quote_list, quote_qualified
from clinicflow.opendental import reconcile
from clinicflow.opendental.chunks import KeyRange
from clinicflow.opendental.sweep import Sweep
from clinicflow.opendental.tables.typemap import Kind, PgColumn
from clinicflow.opendental.warehouse import copy_stream, incremental_load
from clinicflow.opendental.warehouse.load_plan import LoadPlan
from clinicflow.opendental.warehouse.verify_canonical import (
    canonical_mysql,
    canonical_postgres,
    key_text_mysql,
    key_text_postgres,
)

# Buckets above this many rows are not compared key by key (only reported).
DRILLDOWN_MAX_ROWS = 200_000
EXAMPLE_KEYS = 5


@dataclass
class BucketDiff:
    bucket: int
    key_range: str
    source_rows: int
    raw_rows: int
    missing_in_raw: list[str] = field(default_factory=list)
    extra_in_raw: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    missing_count: int = 0
    extra_count: int = 0
    changed_count: int = 0
    compared: bool = False

    def describe(self) -> str:
        text = f"keys {self.key_range}: source {self.source_rows} rows, raw {self.raw_rows}"
        if self.compared:
            parts = []
            for label, count, keys in (
                ("missing in raw", self.missing_count, self.missing_in_raw),
                ("only in raw", self.extra_count, self.extra_in_raw),
                ("values differ", self.changed_count, self.changed),
            ):
                if count:
                    parts.append(f"{count} {label} (e.g. {', '.join(keys)})")
            text += ": " + ("; ".join(parts) if parts else "checksums differ")
        return text


@dataclass
class VerifyResult:
    table: str
    source_rows: int = 0
    raw_rows: int = 0
    buckets: int = 0
    diffs: list[BucketDiff] = field(default_factory=list)
    hashed: int | None = None  # ranges whose row checksums were compared (None: every range)
    swept: str = ""  # what was compared ("keys+checksums slice 3/10")

    def swept_note(self) -> str:
        """For the metrics' ``swept``: what this verification compared, in how many ranges."""
        hashed = self.buckets if self.hashed is None else self.hashed
        return f"verification {self.swept} ({hashed}/{self.buckets} ranges checksummed)"

    @property
    def ok(self) -> bool:
        return not self.diffs

    @property
    def only_extra_rows(self) -> bool:
        """Every difference is a row still in raw that the source deleted (deletes not reconciled)."""
        return bool(self.diffs) and all(
            d.compared and d.extra_count and not d.missing_count and not d.changed_count for d in self.diffs
        )

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "stale" if self.only_extra_rows else "differs"

    def summary(self) -> str:
        if self.ok:
            if self.hashed is None or self.hashed == self.buckets:
                return f"table {self.table!r}: {self.source_rows} rows, {self.buckets} checksummed ranges equal"
            return (
                f"table {self.table!r}: {self.source_rows} rows, {self.buckets} key ranges equal "
                f"(row checksums in {self.hashed} of them tonight)"
            )
        head = (
            f"table {self.table!r}: source {self.source_rows} rows, raw {self.raw_rows}; "
            f"{len(self.diffs)} of {self.buckets} key ranges differ: "
        )
        return head + " | ".join(d.describe() for d in self.diffs[:5]) + (" | ..." if len(self.diffs) > 5 else "")


def _range_column(plan: LoadPlan) -> PgColumn | None:
    if not plan.primary_key:
        return None
    col = plan.column(plan.primary_key[0])
    return col if col.kind is Kind.integer else None


def replica_side(mysql_conn: Connection, plan: LoadPlan) -> reconcile.Side:
    """The replica table's aggregate SQL, over the canonical form shared with :func:`raw_side`."""
    return _side(mysql_conn, plan, "mysql", quote_ident(plan.table, "mysql"))


def raw_side(pg_conn: PgConnection, plan: LoadPlan) -> reconcile.Side:
    """raw.<table>'s aggregate SQL (see :func:`replica_side`)."""
    return _side(pg_conn, plan, "postgres", quote_qualified(plan.raw_schema, plan.table, "postgres"))


def _side(conn: Connection, plan: LoadPlan, dialect: Dialect, table_sql: str) -> reconcile.Side:
    key_text, canonical = (
        (key_text_mysql, canonical_mysql) if dialect == "mysql" else (key_text_postgres, canonical_postgres)
    )
    column = _range_column(plan)
    single = column is not None and len(plan.primary_key) == 1
    if single and column is not None:
        key_hash = quote_ident(column.name, dialect)
    elif plan.primary_key:
        key_hash = reconcile.md5_60_sql(key_text(plan), dialect)
    else:
        key_hash = "0"
    return reconcile.Side(
        conn,
        dialect,
        table_sql,
        column.name if column else None,
        key_hash,
        reconcile.md5_60_sql(canonical(plan), dialect),
        pg_type=column.pg_type if column else "bigint",  # read by the PostgreSQL side's SQL only
        key_unique=single,
    )


# Differing ranges compared key by key for the report (each range holds ~reconcile.BUCKET_ROWS rows).
DRILLDOWN_RANGES = 20


def _describe_range(column: PgColumn | None, key_range: KeyRange) -> str:
    if column is None:
        return "(whole table)"
    if key_range.lower is None and key_range.upper is None:
        return f"{column.name}: every key (one range)"  # it read "Id [..)"
    lo = "" if key_range.lower is None else str(key_range.lower)
    hi = "" if key_range.upper is None else str(key_range.upper)
    return f"{column.name} [{lo}..{hi})"


def verify_table(
    mysql_conn: Connection,
    pg_conn: PgConnection,
    plan: LoadPlan,
    *,
    bucket_rows: int | None = None,
    ranges: list[KeyRange] | None = None,
    only: list[KeyRange] | None = None,
    sweep: Sweep | None = None,
) -> VerifyResult:
    """Compare raw.<table> with the replica table: counts and checksums per key range, then keys.

    ``sweep``: what is compared (default: counts, key sums and row checksums of every range); a
    table without an integer key column is one range and always compared whole.

    ``mysql_conn`` must come from :func:`clinicflow.connectors.mysql.sessions.raw_connected` (a UTC session)
    (same session time zone as the load). The ranges come from the chunk
    planner (boundaries sampled from the replica's key), so their number is
    bounded by rows / ``bucket_rows`` whatever the key distribution.
    """
    result = VerifyResult(plan.table)
    source, target = replica_side(mysql_conn, plan), raw_side(pg_conn, plan)
    column = _range_column(plan)
    if sweep is None or column is None:
        sweep = Sweep()
    comparison = reconcile.compare(
        source, target, sweep, ranges=ranges, only=only, bucket_rows=bucket_rows or reconcile.BUCKET_ROWS
    )
    result.source_rows, result.raw_rows = comparison.source_rows, comparison.target_rows
    result.buckets = len(comparison.ranges)
    result.hashed = comparison.hashed if comparison.sweep.checksums and comparison.sweep.slices > 1 else None
    result.swept = comparison.sweep.describe()
    empty = reconcile.RangeStats()
    for n, key_range in enumerate(comparison.differing):
        s = comparison.source.get(key_range.index, empty)
        r = comparison.target.get(key_range.index, empty)
        diff = BucketDiff(key_range.index, _describe_range(column, key_range), s.rows, r.rows)
        if n < DRILLDOWN_RANGES and max(s.rows, r.rows) <= DRILLDOWN_MAX_ROWS and plan.primary_key:
            _drill_down(mysql_conn, pg_conn, plan, diff, column, key_range)
        result.diffs.append(diff)
    return result


def _drill_down(
    mysql_conn: Connection,
    pg_conn: PgConnection,
    plan: LoadPlan,
    diff: BucketDiff,
    column: PgColumn | None,
    key_range: KeyRange,
) -> None:
    """Compare one range key by key (keys and row hashes only)."""
    keys_my = quote_list(list(plan.primary_key), "mysql")
    keys_pg = quote_list(list(plan.primary_key), "postgres")
    my_pred, my_params = reconcile.ranges_predicate([key_range], column.name if column else None, "mysql")
    pg_pred, pg_params = reconcile.ranges_predicate([key_range], column.name if column else None, "postgres")
    with mysql_conn.cursor() as cur:
        cur.execute(
            f"SELECT CONCAT_WS(',', {keys_my}), MD5({canonical_mysql(plan)}) "
            f"FROM {quote_ident(plan.table, 'mysql')} WHERE {my_pred}",
            tuple(my_params),
        )
        source = {catalog_name(k): catalog_text(h) for k, h in cur.fetchall()}
    with pg_conn.cursor() as cur:
        cur.execute(reconcile.PG_CANONICAL_SESSION)
        cur.execute(
            f"SELECT concat_ws(',', {keys_pg}), md5({canonical_postgres(plan)}) "
            f"FROM {quote_qualified(plan.raw_schema, plan.table, 'postgres')} WHERE {pg_pred}",
            tuple(pg_params),
        )
        raw = dict(cur.fetchall())
    pg_conn.rollback()
    missing = sorted(k for k in source if k not in raw)
    extra = sorted(k for k in raw if k not in source)
    changed = sorted(k for k in source if k in raw and source[k] != raw[k])
    diff.compared = True
    diff.missing_count, diff.extra_count, diff.changed_count = len(missing), len(extra), len(changed)
    diff.missing_in_raw, diff.extra_in_raw, diff.changed = (
        missing[:EXAMPLE_KEYS],
        extra[:EXAMPLE_KEYS],
        changed[:EXAMPLE_KEYS],
    )


# --- Reconciliation of raw with the replica (the nightly's second leg) ---------


def reconcile_raw(
    mysql_server: MySQLServerLike,
    mysql_conn: Connection,
    pg_conn: PgConnection,
    plan: LoadPlan,
    sweep: Sweep,
    *,
    ranges: list[KeyRange] | None = None,
) -> tuple[reconcile.ReconcileStats, VerifyResult]:
    """Make raw.<table> equal to the replica table, then verify the ranges that were repaired.

    Ranges whose keys or (tonight's slice of) row checksums differ are
    re-read from the replica into a temporary table and merged into raw in one
    transaction per group: rows the replica no longer has are deleted, missing
    and changed rows written. The comparison is the night's verification: the
    returned result lists ranges still different after the repair (none when
    all went well). ``mysql_conn`` comes from
    :func:`clinicflow.connectors.mysql.sessions.raw_connected` (a UTC session)
    with ``streaming=True``.
    """
    stats = reconcile.ReconcileStats(swept=sweep.describe())
    result = VerifyResult(plan.table)
    if not plan.primary_key or not sweep.enabled:
        return stats, result
    source, target = replica_side(mysql_conn, plan), raw_side(pg_conn, plan)
    comparison = reconcile.compare(source, target, sweep, ranges=ranges)
    stats.ranges, stats.ranges_hashed = len(comparison.ranges), comparison.hashed
    stats.swept = comparison.sweep.describe()
    result.source_rows, result.raw_rows, result.buckets = (
        comparison.source_rows,
        comparison.target_rows,
        len(comparison.ranges),
    )
    for group in reconcile.group_ranges(comparison.differing, comparison.source, plan.batch_size):
        stats.add(_resync_raw(mysql_server, mysql_conn, pg_conn, plan, source.key_column, group))
    if comparison.differing:
        # Only the repaired ranges can have changed: they alone are compared again.
        after = verify_table(mysql_conn, pg_conn, plan, ranges=comparison.ranges, only=comparison.differing)
        result.diffs = after.diffs
    return stats, result


FIX_TABLE = "cf_fix_stage"


def _resync_raw(
    mysql_server: MySQLServerLike,
    mysql_conn: Connection,
    pg_conn: PgConnection,
    plan: LoadPlan,
    range_column: str | None,
    ranges: list[KeyRange],
) -> reconcile.ReconcileStats:
    out = reconcile.ReconcileStats(ranges_recopied=len(ranges))
    my_pred, my_params = reconcile.ranges_predicate(ranges, range_column, "mysql")
    raw = quote_qualified(plan.raw_schema, plan.table, "postgres")
    raw_ranges, raw_params = reconcile.restricted_from(raw_side(pg_conn, plan), ranges)
    temp = quote_ident(FIX_TABLE, "postgres")
    join = " AND ".join(f"f.{quote_ident(k, 'postgres')} = t.{quote_ident(k, 'postgres')}" for k in plan.primary_key)
    try:
        with pg_conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {temp}")
            cur.execute(f"CREATE TEMP TABLE {temp} (LIKE {raw})")
            copy_stream.stream_copy(mysql_conn, cur, plan, temp, my_pred, my_params, mysql_server=mysql_server)
            cur.execute(f"SELECT count(*) FROM {temp} f WHERE NOT EXISTS (SELECT 1 FROM {raw} t WHERE {join})")
            out.rows_missing = int(cur.fetchone()[0])
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")  # see reconcile.aggregate
            # ctid = ANY(ARRAY(...)): a TID scan of exactly the rows found through the key's index.
            cur.execute(
                f"DELETE FROM {raw} WHERE ctid = ANY(ARRAY(SELECT t.ctid FROM {raw_ranges} "
                f"WHERE NOT EXISTS (SELECT 1 FROM {temp} f WHERE {join})))",
                tuple(raw_params),
            )
            out.rows_deleted = max(cur.rowcount, 0)
            cur.execute(incremental_load.merge_sql(plan, temp))
            out.rows_changed = max(cur.rowcount - out.rows_missing, 0)
            cur.execute(f"DROP TABLE {temp}")
        pg_conn.commit()  # deletes and merge together, or neither
    except BaseException:
        pg_conn.rollback()
        raise
    return out
