"""The one chunk planner: key ranges and keyset predicates, MySQL and PostgreSQL.

Two ways to cut a table into chunks, both bounded by ``batch_size``:

* **key ranges** (:func:`walk_boundaries` / :func:`sample_boundaries` +
  :func:`ranges_from_boundaries`): for a single integer primary key, ranges of
  about ``batch_size`` rows whose boundaries are sampled from the key's index,
  copied in parallel and retried independently (also the buckets of
  verification and reconciliation);
* **keyset pages** (:func:`keyset_after`): for incremental copies and
  composite keys, each chunk starts strictly after the last key of the
  previous one, ordered by ``(watermark columns..., primary key...)``. Rows
  sharing one watermark value across a chunk boundary are never skipped,
  because the primary key breaks the tie.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clinicflow.core.dbapi import Connection
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.sql import Dialect, quote_ident

# Engines where a key range is one sequential read; MyISAM/Aria read a range row by row (see docs/loading.md).
CLUSTERED_ENGINES = frozenset({"innodb"})


def clustered_by_key(engine: str | None) -> bool:
    """True when ``engine`` (as information_schema names it) reads primary-key ranges at table-scan cost."""
    return (engine or "").strip().lower() in CLUSTERED_ENGINES


class ChunkPlanError(ClinicflowError):
    """A plan would hold more ranges than any table can need: a planner bug, raised before allocating."""


# No table needs more ranges than this; a plan past it is a bug, never an allocation.
MAX_RANGES = 100_000


@dataclass(frozen=True)
class KeyRange:
    """Keys ``lower <= key < upper`` of a single integer key; None leaves that side open.

    Ranges come from boundaries sampled from the key itself (:func:`walk_boundaries`,
    :func:`sample_boundaries`), never from arithmetic on ``[min, max]``: their
    number is bounded by rows / rows_per_range whatever the key distribution
    (dense, gaps of millions, random 63-bit keys, negative keys). The first and
    last range are open, so together they cover every key, including keys
    inserted after planning.
    """

    index: int
    lower: int | None
    upper: int | None

    @property
    def label(self) -> str:
        return f"{'start' if self.lower is None else self.lower}..{'end' if self.upper is None else self.upper}"

    def predicate(self, key: str, dialect: Dialect) -> tuple[str, list[int]]:
        col = quote_ident(key, dialect)
        parts, params = [], []
        if self.lower is not None:
            parts.append(f"{col} >= %s")
            params.append(self.lower)
        if self.upper is not None:
            parts.append(f"{col} < %s")
            params.append(self.upper)
        return (" AND ".join(parts) or "1=1"), params

    def inline_predicate(self, key: str, dialect: Dialect) -> str:
        """:meth:`predicate` with its integer bounds written in, for use inside a select expression."""
        sql, params = self.predicate(key, dialect)
        for value in params:
            sql = sql.replace("%s", str(int(value)), 1)
        return sql


def ranges_from_boundaries(boundaries: Sequence[int]) -> list[KeyRange]:
    """The ranges cut by sorted, distinct ``boundaries`` (each one the lower bound of a range)."""
    if len(boundaries) + 1 > MAX_RANGES:
        raise ChunkPlanError(f"{len(boundaries) + 1} key ranges planned, more than the {MAX_RANGES} allowed")
    edges: list[int | None] = [None, *boundaries, None]
    for a, b in itertools.pairwise(boundaries):
        if not a < b:
            raise ChunkPlanError(f"key range boundaries must increase: {a} then {b}")
    return [KeyRange(i, lo, hi) for i, (lo, hi) in enumerate(itertools.pairwise(edges))]


def rows_per_range(rows: int, wanted: int, max_ranges: int = MAX_RANGES) -> int:
    """``wanted`` rows per range, raised where needed so ``rows`` never make more than ``max_ranges`` ranges."""
    if wanted <= 0:
        raise ValueError("rows per range must be positive")
    return max(wanted, -(-max(rows, 0) // max_ranges))


def walk_boundaries(
    conn: Connection, table_sql: str, key: str, step: int, dialect: Dialect, *, max_ranges: int = MAX_RANGES
) -> list[int]:
    """Every ``step``-th key of ``table_sql`` in key order, by an index-only keyset walk.

    One ``ORDER BY key LIMIT 1 OFFSET step`` per boundary, each reading
    ``step`` entries of the key's own index: rows / step short queries. For
    coarse ranges (copy chunks); fine ones come from :func:`sample_boundaries`.
    """
    if step <= 0:
        raise ValueError("batch_size must be positive")
    q = quote_ident(key, dialect)
    boundaries: list[int] = []
    with conn.cursor() as cur:
        cur.execute(f"SELECT MIN({q}) FROM {table_sql}")
        row = cur.fetchall()[0]
        current = row[0]
        while current is not None:
            cur.execute(
                f"SELECT {q} FROM {table_sql} WHERE {q} >= %s ORDER BY {q} LIMIT 1 OFFSET {int(step)}", (int(current),)
            )
            rows = cur.fetchall()
            if not rows:
                break
            current = int(rows[0][0])
            boundaries.append(current)
            if len(boundaries) >= max_ranges:
                raise ChunkPlanError(f"{table_sql}: more than {max_ranges} key ranges of {step} rows")
    return boundaries


def sample_boundaries(
    conn: Connection, table_sql: str, key: str, step: int, dialect: Dialect, *, max_ranges: int = MAX_RANGES
) -> list[int]:
    """Every ``step``-th key of ``table_sql`` in key order, in one pass (ROW_NUMBER over the key).

    For fine ranges (reconciliation buckets of ~100 rows), where a keyset walk
    would cost one query per boundary. ``step`` must keep rows / step within
    ``max_ranges`` (see :func:`rows_per_range`).
    """
    if step <= 0:
        raise ValueError("rows per range must be positive")
    q = quote_ident(key, dialect)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT k FROM (SELECT {q} AS k, ROW_NUMBER() OVER (ORDER BY {q}) AS rn FROM {table_sql}) s "
            f"WHERE rn > 1 AND MOD(rn - 1, {int(step)}) = 0 ORDER BY k LIMIT {int(max_ranges)}"
        )
        # A non-unique column (the first of a composite key) can repeat a value at two sample
        # points: a range then holds all rows of that value, never an empty or inverted range.
        boundaries = sorted({int(r[0]) for r in cur.fetchall()})
    if len(boundaries) >= max_ranges:
        raise ChunkPlanError(f"{table_sql}: more than {max_ranges} key ranges of {step} rows")
    return boundaries


def even_step(boundaries: Sequence[int]) -> int | None:
    """The common difference of equally spaced boundaries (at least two), else None."""
    if len(boundaries) < 2:
        return None
    step = int(boundaries[1]) - int(boundaries[0])
    if step <= 0 or any(int(b) - int(a) != step for a, b in itertools.pairwise(boundaries)):
        return None
    return step


def bucket_sql(key_expr: str, boundaries: Sequence[int], dialect: Dialect, *, pg_type: str = "bigint") -> str:
    """SQL giving the index of the :class:`KeyRange` (from :func:`ranges_from_boundaries`) a key falls in.

    MySQL's ``INTERVAL(k, b1, b2, ...)`` and PostgreSQL's ``width_bucket(k,
    ARRAY[b1, b2, ...])`` both binary-search sorted lower bounds and agree:
    0 below b1, i for b_i <= k < b_i+1. One GROUP BY over this expression
    aggregates every range in one pass over the table.
    """
    if not boundaries:
        return "0"
    step = even_step(boundaries)
    if step:
        # Equally spaced boundaries: the same index by arithmetic, a tenth of a range search's cost.
        origin = int(boundaries[0]) - step
        origin_sql = f"({origin})" if origin < 0 else str(origin)
        if dialect == "mysql":
            quotient = f"({key_expr} - {origin_sql}) DIV {step}"
        elif pg_type.startswith("numeric"):
            quotient = f"div({key_expr} - {origin_sql}, {step})"
        else:
            quotient = f"({key_expr} - {origin_sql}) / {step}"
        return f"LEAST(GREATEST({quotient}, 0), {len(boundaries)})"
    values = ", ".join(str(int(b)) for b in boundaries)
    if dialect == "mysql":
        return f"INTERVAL({key_expr}, {values})"
    array_type = "numeric" if pg_type.startswith("numeric") else "bigint"
    return f"width_bucket({key_expr}, ARRAY[{values}]::{array_type}[])"


def keyset_columns(incremental_columns: Sequence[str], primary_key: Sequence[str]) -> list[str]:
    """Ordering columns of a keyset copy: watermark columns, then key columns not already there."""
    cols = list(incremental_columns)
    cols += [c for c in primary_key if c not in cols]
    return cols


def keyset_after(columns: Sequence[str], values: Sequence[Any] | None, dialect: Dialect) -> tuple[str, list[Any]]:
    """SQL predicate ``(c1, c2, ...) > (v1, v2, ...)`` and its parameters.

    Written out as nested OR/AND rather than a row constructor, with a leading
    ``c1 >= v1`` so both MariaDB and PostgreSQL use an index range on ``c1``.
    ``values=None`` means "from the start" and gives ``1=1``.
    """
    if values is None:
        return "1=1", []
    if len(values) != len(columns):
        raise ValueError(f"keyset has {len(columns)} columns but {len(values)} values")
    quoted = [quote_ident(c, dialect) for c in columns]
    sql = f"{quoted[-1]} > %s"
    params: list[Any] = [values[-1]]
    for col, value in zip(reversed(quoted[:-1]), reversed(list(values[:-1])), strict=False):
        sql = f"{col} > %s OR ({col} = %s AND ({sql}))"
        params = [value, value, *params]
    return f"({quoted[0]} >= %s AND ({sql}))", [values[0], *params]


def keyset_order(columns: Sequence[str], dialect: Dialect) -> str:
    return ", ".join(quote_ident(c, dialect) for c in columns)


def keyset_max(mysql_conn: Connection, table: str, columns: Sequence[str]) -> tuple[Any, ...] | None:
    """The highest ``(c1, c2, ...)`` in ``table`` (MySQL order: NULL lowest), or None when it is empty.

    One ``MAX`` per column, each restricted to the rows sharing the maxima
    found so far. Why not ``ORDER BY c1 DESC, c2 DESC LIMIT 1``: unless one
    index covers all the columns in that order MariaDB sorts the whole table
    for it before the first row moves (see docs/loading.md);
    ``MAX(c1)`` reads the end of c1's index, and the next ``MAX`` only the
    rows that tie on c1.
    """
    values: list[Any] = []
    where: list[str] = []
    params: list[Any] = []
    with mysql_conn.cursor() as cur:
        for column in columns:
            col = quote_ident(column, "mysql")
            source = f"{quote_ident(table, 'mysql')} WHERE {' AND '.join(where) or '1=1'}"
            cur.execute(f"SELECT MAX({col}) FROM {source}", tuple(params))
            value = cur.fetchall()[0][0]  # fetchall: an unbuffered cursor must read to the end
            if value is None:
                # MAX skips NULL: either no rows are left, or all of them hold NULL here.
                cur.execute(f"SELECT 1 FROM {source} LIMIT 1", tuple(params))
                if not cur.fetchall():
                    return None
                where.append(f"{col} IS NULL")
            else:
                where.append(f"{col} = %s")
                params.append(value)
            values.append(value)
    return tuple(values)


# Timestamp watermarks are re-read this far back on each run: a row updated
# in the same second as the stored watermark but with a smaller key would
# otherwise sort before it and be missed. Re-reading is harmless (upsert).
WATERMARK_OVERLAP_SECONDS = 1


def clock_bound(mysql_conn: Connection, *, wall_clock: bool) -> str:
    """The server's clock as a time watermark may hold it: NOW(6) in the server's zone, or UTC for TIMESTAMP.

    ``wall_clock``: a DATETIME stamp (written in the server's local time); otherwise a TIMESTAMP read
    in the session's UTC. Read once per table and night (three statements restore the session's zone).
    """
    with mysql_conn.cursor() as cur:
        if not wall_clock:
            cur.execute("SELECT UTC_TIMESTAMP(6)")
            return str(_text(cur.fetchone()[0]))
        cur.execute("SELECT @@session.time_zone")
        zone = _text(cur.fetchone()[0])
        cur.execute("SET SESSION time_zone = @@global.time_zone")
        cur.execute("SELECT NOW(6)")
        now = _text(cur.fetchone()[0])
        cur.execute("SET SESSION time_zone = %s", (zone,))
    return str(now)


def bounded_mark(mark: Sequence[Any] | None, bound: str | None) -> list[Any] | None:
    """A keyset watermark whose leading time value is never ahead of ``bound`` (the source's NOW()).

    A row stamped in the future by a workstation with a skewed clock would
    otherwise move the watermark past every change made until that date. Held
    at NOW(), the watermark re-reads the future rows each night (a merge makes
    that harmless) and sees every ordinary change; the reconciliation finds the rest.
    """
    if mark is None or bound is None or not mark or mark[0] is None:
        return None if mark is None else list(mark)
    first = _text(mark[0])
    return [bound, *mark[1:]] if str(first) > bound else list(mark)


def _text(value: Any) -> Any:
    return bytes(value).decode() if isinstance(value, (bytes, bytearray)) else value
