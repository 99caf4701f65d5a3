"""Range reconciliation: find the key ranges whose rows differ between two tables, in one pass per side.

Used by both legs of the nightly (source → replica in :mod:`clinicflow.opendental.replication`,
replica → raw in :mod:`clinicflow.opendental.warehouse.verify`), in the spirit of pt-table-checksum:

1. boundaries are sampled from the source's primary key (the one chunk
   planner, :mod:`clinicflow.opendental.chunks`), about :data:`BUCKET_ROWS` rows a range
   (fewer for wide rows: about :data:`BUCKET_BYTES`);
2. each server aggregates the ranges in one ``GROUP BY`` over the range
   index (``INTERVAL`` / ``width_bucket``): row count, a sum of key hashes
   (deletes, missing rows) and, for the ranges in tonight's slice, a sum of
   row hashes over a canonical form of the row (silent updates). With a
   slice, the whole table's count and key-hash sum come first and every
   range is counted only when those differ (:func:`table_totals`);
3. ranges whose aggregates differ are re-read from the source and merged
   into the target by the caller (:func:`group_ranges` bounds each re-read).

Both aggregates run at the same time, so the wait is the slower side. Memory
is bounded by the number of ranges (at most :data:`MAX_BUCKETS`), never by rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from clinicflow.core.dbapi import Connection
from clinicflow.core.sql import Dialect, quote_ident
from clinicflow.opendental.chunks import (
    KeyRange,
    bucket_sql,
    ranges_from_boundaries,
    rows_per_range,
    sample_boundaries,
)
from clinicflow.opendental.sweep import Sweep

_Result = TypeVar("_Result")

# Rows per compared range: small, so a scattered change re-reads few rows; the
# ranges of a large table are capped so the aggregate stays a few thousand groups.
BUCKET_ROWS = 100
MAX_BUCKETS = 20_000
# ... and of wide rows (documents) about this many bytes: a silent update then re-copies ~1 MB, not 100
# images, and tonight's slice of a table of a few thousand documents is its share, not a 10 MB range or two.
BUCKET_BYTES = 1 << 20
# A unique key whose span is at most this many times its row count is dense: its ranges are cut
# arithmetically; sparser keys (random 63-bit keys, big gaps) get boundaries sampled from the data.
DENSE_SPAN = 2
# Differing ranges re-read per source query (an OR of key ranges; bounded SQL and rows).
RESYNC_RANGES_PER_QUERY = 200


# PostgreSQL session settings under which its canonical row text equals MySQL's (dates, intervals, doubles).
PG_CANONICAL_SESSION = (
    "SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1"
)


@dataclass(frozen=True)
class Side:
    """One table to compare: its connection, dialect and the SQL pieces of its aggregate."""

    conn: Connection
    dialect: Dialect
    table_sql: str
    key_column: str | None  # single integer column the ranges cut (first primary-key column); None: one range
    key_hash: str  # SQL: an exact number per row, summed (the key itself for one integer key)
    row_hash: str  # SQL: a 60-bit number per row from its canonical text, summed
    pg_type: str = "bigint"
    key_unique: bool = False  # key_column is the whole primary key (each value one row)

    def data_bytes(self) -> int:
        """The table's size as the catalog estimates it (no scan)."""
        with self.conn.cursor() as cur:
            if self.dialect == "postgres":
                cur.execute("SELECT pg_total_relation_size(%s::regclass)", (self.table_sql,))
            else:
                cur.execute(
                    "SELECT DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                    "AND CONCAT('`', TABLE_NAME, '`') = %s",
                    (self.table_sql,),
                )
            row = cur.fetchone()
        _end(self)
        return int(row[0] or 0) if row else 0

    def range_index_sql(self, boundaries: Sequence[int]) -> str:
        if self.key_column is None:
            return "0"
        return bucket_sql(quote_ident(self.key_column, self.dialect), boundaries, self.dialect, pg_type=self.pg_type)


@dataclass
class RangeStats:
    rows: int = 0
    key_sum: int = 0
    row_sum: int = 0


@dataclass
class Comparison:
    """The ranges of one table and which of them differ."""

    ranges: list[KeyRange]
    source: dict[int, RangeStats]
    target: dict[int, RangeStats]
    hashed: int = 0
    differing: list[KeyRange] = field(default_factory=list)
    sweep: Sweep = field(default_factory=Sweep)  # tonight's, with its slices sized
    totals: tuple[RangeStats, RangeStats] | None = None  # whole-table figures, when ranges were not all counted

    @property
    def source_rows(self) -> int:
        return self.totals[0].rows if self.totals else sum(s.rows for s in self.source.values())

    @property
    def target_rows(self) -> int:
        return self.totals[1].rows if self.totals else sum(s.rows for s in self.target.values())


@dataclass
class ReconcileStats:
    """What one leg's reconciliation of one table found and repaired (metrics and artifact)."""

    ranges: int = 0
    ranges_hashed: int = 0
    ranges_recopied: int = 0
    rows_deleted: int = 0
    rows_missing: int = 0
    rows_changed: int = 0
    swept: str = "off"
    # The compared ranges' boundaries, handed from the replica's leg to raw's (one sampling a night);
    # not a metric.
    boundaries: list[int] = field(default_factory=list, repr=False, compare=False)

    def figures(self) -> dict[str, Any]:
        """The metrics of this leg (everything but the boundaries)."""
        return {k: v for k, v in asdict(self).items() if k != "boundaries"}

    def add(self, other: ReconcileStats) -> None:
        self.ranges_recopied += other.ranges_recopied
        self.rows_deleted += other.rows_deleted
        self.rows_missing += other.rows_missing
        self.rows_changed += other.rows_changed


def md5_60_sql(text_expr: str, dialect: Dialect) -> str:
    """A 60-bit integer from the MD5 of ``text_expr``, computed the same on MySQL and PostgreSQL."""
    if dialect == "mysql":
        return f"CAST(CONV(LEFT(MD5({text_expr}), 15), 16, 10) AS UNSIGNED)"
    return f"('x' || left(md5({text_expr}), 15))::bit(60)::bigint"


def plan_ranges(
    side: Side, *, bucket_rows: int = BUCKET_ROWS, max_buckets: int = MAX_BUCKETS, data_bytes: int = 0
) -> list[KeyRange]:
    """Ranges of about ``bucket_rows`` rows of ``side`` (at most ``max_buckets``), boundaries from its key.

    With ``data_bytes`` (the table's size), ranges of wide rows hold about :data:`BUCKET_BYTES` instead.
    """
    if side.key_column is None:
        return ranges_from_boundaries([])
    key = quote_ident(side.key_column, side.dialect)
    with side.conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*), MIN({key}), MAX({key}) FROM {side.table_sql}")
        count, low, high = cur.fetchall()[0]
    _end(side)
    rows = int(count)
    if data_bytes > 0 and rows:
        bucket_rows = max(1, min(bucket_rows, BUCKET_BYTES * rows // data_bytes))
    step = rows_per_range(rows, bucket_rows, max_buckets)
    if rows and side.key_unique and int(high) - int(low) + 1 <= DENSE_SPAN * rows:
        # Dense unique keys (auto-increment with some deletes): ranges of `step` key values hold at
        # most `step` rows and number at most DENSE_SPAN * rows / step, so they are bounded by the
        # rows like sampled ones, cost no sampling pass, and index rows by arithmetic (bucket_sql).
        boundaries = list(range(int(low) + step, int(high) + 1, step))
    else:
        boundaries = sample_boundaries(
            side.conn, side.table_sql, side.key_column, step, side.dialect, max_ranges=max_buckets + 1
        )
        _end(side)
    return ranges_from_boundaries(boundaries)


def _end(side: Side) -> None:
    # PostgreSQL opened a transaction for the read; end it so no snapshot is held between steps.
    if side.dialect == "postgres":
        side.conn.rollback()


def restricted_from(side: Side, only: Sequence[KeyRange] | None, alias: str = "t") -> tuple[str, list[Any]]:
    """``FROM`` clause of ``side``'s table (as ``alias``), limited to the ranges ``only`` (None: all rows).

    MySQL reads an OR of key ranges as index ranges. PostgreSQL's planner
    evaluates hundreds of OR'ed ranges row by row over a sequential scan, so
    there the ranges are a joined ``unnest`` of bounds: one index range scan each.
    """
    table = f"{side.table_sql} AS {alias}"
    if only is None or side.key_column is None:
        return table, []
    if side.dialect == "mysql":
        where, params = ranges_predicate(only, side.key_column, "mysql", qualifier=alias)
        return f"{table} WHERE {where}", params
    numeric = side.pg_type.startswith("numeric")
    floor, ceiling = (-1, 10**20) if numeric else (-(2**63), 2**63 - 1)
    lows = [floor if r.lower is None else r.lower for r in only]
    highs = [ceiling if r.upper is None else r.upper - 1 for r in only]
    array = "numeric[]" if numeric else "bigint[]"
    key = f"{alias}.{quote_ident(side.key_column, 'postgres')}"
    return (
        f"{table} JOIN unnest(%s::{array}, %s::{array}) AS cf_r(cf_lo, cf_hi) "
        f"ON {key} >= cf_r.cf_lo AND {key} <= cf_r.cf_hi"
    ), [lows, highs]


def aggregate(
    side: Side, ranges: Sequence[KeyRange], sweep: Sweep, *, only: Sequence[KeyRange] | None = None
) -> dict[int, RangeStats]:
    """Per range index: rows, key-hash sum and (for tonight's slice) row-hash sum, in one pass.

    ``only``: those ranges.
    """
    if only is not None and side.dialect == "mysql" and len(only) > RESYNC_RANGES_PER_QUERY:
        # MariaDB's range optimizer gives up on an OR of a thousand ranges and scans the table:
        # a few hundred ranges a query keep it on the key's index.
        out: dict[int, RangeStats] = {}
        for start in range(0, len(only), RESYNC_RANGES_PER_QUERY):
            out.update(aggregate(side, ranges, sweep, only=only[start : start + RESYNC_RANGES_PER_QUERY]))
        return out
    key_sum = f"SUM({side.key_hash})" if sweep.keys else "0"
    first, end = sweep.hashed_ranges(ranges)
    if first >= end:
        row_sum = "0"
    elif first == 0 and end == len(ranges):
        row_sum = f"SUM({side.row_hash})"
    else:
        # The slice is one key interval: two comparisons per row decide whether it is hashed.
        interval_sql = KeyRange(-1, ranges[first].lower, ranges[end - 1].upper).inline_predicate(
            side.key_column or "", side.dialect
        )
        row_sum = f"SUM(CASE WHEN {interval_sql} THEN {side.row_hash} ELSE 0 END)"
    return _aggregate_query(side, ranges, key_sum, row_sum, only)


def _aggregate_query(
    side: Side, ranges: Sequence[KeyRange], key_sum: str, row_sum: str, only: Sequence[KeyRange] | None
) -> dict[int, RangeStats]:
    boundaries = [r.lower for r in ranges[1:]]
    index = side.range_index_sql(boundaries)  # type: ignore[arg-type]
    stats: dict[int, RangeStats] = {}
    with side.conn.cursor() as cur:
        if side.dialect == "postgres":
            # jit off: compiling the long canonical expression costs more than the query (see docs/loading.md).
            cur.execute(PG_CANONICAL_SESSION + "; SET LOCAL jit = off")
            if only is not None:
                # The joined bounds make the planner expect millions of rows and start parallel
                # workers, which cost 50 times the few index ranges actually read.
                cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        source, params = restricted_from(side, only)
        # GROUP BY 1, not an alias: MySQL resolves a GROUP BY name to a column first.
        cur.execute(f"SELECT {index}, COUNT(*), {key_sum}, {row_sum} FROM {source} GROUP BY 1", tuple(params))
        for b, n, k, r in cur.fetchall():
            stats[int(b)] = RangeStats(int(n), int(k or 0), int(r or 0))
    _end(side)
    return stats


def compare(
    source: Side,
    target: Side,
    sweep: Sweep,
    *,
    ranges: Sequence[KeyRange] | None = None,
    only: Sequence[KeyRange] | None = None,
    bucket_rows: int = BUCKET_ROWS,
) -> Comparison:
    """Aggregate both sides at the same time and list the ranges whose rows differ.

    ``only`` (a subset of ``ranges``) restricts both aggregates to those ranges,
    e.g. to check again the ranges a repair just rewrote.
    """
    data_bytes = source.data_bytes() if ranges is None or sweep.slices == 0 else 0
    if ranges is None:
        ranges = plan_ranges(source, bucket_rows=bucket_rows, data_bytes=data_bytes)
    ranges = list(ranges)
    sweep = sweep.sized(len(ranges), data_bytes)
    checked = list(only) if only is not None else ranges
    first, end = sweep.hashed_ranges(ranges)
    if only is None and source.key_column is not None and (first, end) != (0, len(ranges)):
        result = _compare_totals_first(source, target, ranges, sweep, first, end)
    else:
        source_stats, target_stats = _on_both(source, target, lambda side: aggregate(side, ranges, sweep, only=only))
        result = Comparison(ranges, source_stats, target_stats, sweep=sweep)
    empty = RangeStats()
    for key_range in checked:
        hashed = first <= key_range.index < end
        result.hashed += hashed
        s, t = result.source.get(key_range.index, empty), result.target.get(key_range.index, empty)
        if s.rows != t.rows or (sweep.keys and s.key_sum != t.key_sum) or (hashed and s.row_sum != t.row_sum):
            result.differing.append(key_range)
    return result


def _on_both(source: Side, target: Side, work: Callable[[Side], _Result]) -> tuple[_Result, _Result]:
    """``work`` on both sides at the same time (the wait is the slower side)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clinicflow-reconcile") as pool:
        source_future = pool.submit(work, source)
        target_result = work(target)
        return source_future.result(), target_result


def table_totals(side: Side, keys: bool = True) -> RangeStats:
    """The whole table's row count and (``keys``) key-hash sum, from the key's index: no row read."""
    key_sum = f"SUM({side.key_hash})" if keys else "0"
    with side.conn.cursor() as cur:
        if side.dialect == "postgres":
            cur.execute("SET LOCAL jit = off")  # past ~3M rows PostgreSQL would compile this one scan
        cur.execute(f"SELECT COUNT(*), {key_sum} FROM {side.table_sql}")
        rows, key_total = cur.fetchall()[0]
    _end(side)
    return RangeStats(int(rows), int(key_total or 0))


def _compare_totals_first(
    source: Side, target: Side, ranges: Sequence[KeyRange], sweep: Sweep, first: int, end: int
) -> Comparison:
    """Whole-table totals and tonight's slice first; the counts of every range only when the totals differ.

    Equal row counts and key sums mean no row is missing or extra anywhere (a deleted key and a
    backdated insert under another key change the sum), so most nights read the key's index once
    instead of grouping it by range (half the time). Ranges outside the slice are then left out of
    both sides' stats (equal by the totals); when the totals differ, every range is counted as before.
    """
    key_sum = "SUM({})" if sweep.keys else "0"
    interval = [KeyRange(-1, ranges[first].lower, ranges[end - 1].upper)] if first < end else []

    def first_pass(side: Side) -> tuple[RangeStats, dict[int, RangeStats]]:
        hashed = (
            _aggregate_query(side, ranges, key_sum.format(side.key_hash), f"SUM({side.row_hash})", interval)
            if interval
            else {}
        )
        return table_totals(side, sweep.keys), hashed

    (source_total, source_stats), (target_total, target_stats) = _on_both(source, target, first_pass)
    if source_total != target_total:
        source_counts, target_counts = _on_both(
            source, target, lambda side: _aggregate_query(side, ranges, key_sum.format(side.key_hash), "0", None)
        )
        for counts, hashed in ((source_counts, source_stats), (target_counts, target_stats)):
            for index, stats in hashed.items():
                counts.setdefault(index, RangeStats()).row_sum = stats.row_sum
        source_stats, target_stats = source_counts, target_counts
    return Comparison(list(ranges), source_stats, target_stats, sweep=sweep, totals=(source_total, target_total))


def group_ranges(
    ranges: Sequence[KeyRange], rows: dict[int, RangeStats], max_rows: int, max_ranges: int = RESYNC_RANGES_PER_QUERY
) -> list[list[KeyRange]]:
    """Consecutive groups of ``ranges`` holding at most ``max_rows`` source rows and ``max_ranges`` ranges each."""
    groups: list[list[KeyRange]] = []
    current: list[KeyRange] = []
    current_rows = 0
    for key_range in ranges:
        n = rows.get(key_range.index, RangeStats()).rows
        if current and (current_rows + n > max_rows or len(current) >= max_ranges):
            groups.append(current)
            current, current_rows = [], 0
        current.append(key_range)
        current_rows += n
    if current:
        groups.append(current)
    return groups


def ranges_predicate(
    ranges: Sequence[KeyRange], column: str | None, dialect: Dialect, qualifier: str = ""
) -> tuple[str, list[Any]]:
    """``(k >= a AND k < b) OR ...`` for ``ranges`` of ``column`` (``1=1`` without a range column)."""
    if column is None:
        return "1=1", []
    parts, params = [], []
    for key_range in ranges:
        sql, values = key_range.predicate(column, dialect)
        if qualifier:
            sql = sql.replace(quote_ident(column, dialect), f"{qualifier}.{quote_ident(column, dialect)}")
        parts.append(f"({sql})")
        params += values
    return "(" + " OR ".join(parts) + ")", params
