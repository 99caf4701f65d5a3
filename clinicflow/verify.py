"""Verification of a loaded table against the replication database, and delete reconciliation.

Verification computes, on BOTH servers, per primary-key bucket: the row
count and a checksum (sum of the first 60 bits of each row's MD5) over a
canonical text form of the row. The canonical form of every value class is
the same text on both sides (see :func:`canonical_mysql` and
:func:`canonical_postgres`; jsonb is compared for presence only, because
PostgreSQL normalises JSON text). Buckets whose count or checksum differ are
then compared key by key (bounded by the bucket size) and reported with the
primary-key range and example keys.

Buckets are ``first key column DIV width`` for an integer first key column
(one aggregate query per side, one pass over the table); other tables form
one bucket.

Delete reconciliation (:func:`reconcile_deletes`) walks raw's primary keys in
chunks, asks the replica which of them still exist, and deletes the others.
Keys only, memory bounded by the chunk size, and safe to interrupt (each
chunk commits on its own; a rerun finds what is left).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from clinicflow.pgload import TablePlan, _as_utf8_binary, _escaped_text, _text, zero_date_test
from clinicflow.sql import quote_ident, quote_list, quote_qualified
from clinicflow.typemap import Kind, PgColumn

# Buckets above this many rows are not compared key by key (only reported).
DRILLDOWN_MAX_ROWS = 200_000
EXAMPLE_KEYS = 5

# PostgreSQL prints double precision differently from MariaDB: other exponent
# thresholds and form, and (for integral values of 2^53 and more) sometimes a
# 17th digit where MariaDB's shortest form has 16. So the canonical form of a
# double is, on both sides: the exact integer for 2^53 <= |v| < 9.2e18, else
# the shortest digits laid out as MariaDB does (fixed notation for decimal
# exponents -15..14, and for exponent 15 with 17 digits; otherwise
# d.ddde±x without padding or '+'). tests/load/test_verify.py checks this on
# random doubles against MariaDB itself.
DOUBLE_INTEGRAL_MIN = "9007199254740992"
DOUBLE_INTEGRAL_MAX = "9.2e18"
MYSQL_DOUBLE_TEXT_SQL = r"""
CREATE OR REPLACE FUNCTION {schema}.mysql_double_text_e(v double precision) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
SELECT CASE
  WHEN exp BETWEEN -15 AND 14 THEN
    CASE WHEN v < 0 THEN '-' ELSE '' END || '0.' || repeat('0', -exp - 1) || digits
  WHEN exp = 15 AND length(digits) = 17 THEN
    CASE WHEN v < 0 THEN '-' ELSE '' END || left(digits, 16) || '.' || right(digits, 1)
  ELSE mant || 'e' || exp::text
END
FROM (SELECT split_part(t, 'e', 1) AS mant, split_part(t, 'e', 2)::int AS exp,
             replace(replace(split_part(t, 'e', 1), '-', ''), '.', '') AS digits
      FROM (SELECT v::text AS t) s0) s
$fn$;
-- One expression, not STRICT: PostgreSQL inlines it into the checksum query
-- (a function call per value would cost more than the rest of the row).
CREATE OR REPLACE FUNCTION {schema}.mysql_double_text(v double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT CASE
  WHEN abs(v) >= 9007199254740992 AND abs(v) < 9.2e18 THEN v::int8::text
  WHEN strpos(v::text, 'e') = 0 THEN CASE WHEN v = 0 THEN '0' ELSE v::text END
  ELSE {schema}.mysql_double_text_e(v)
END
$fn$
"""


def mysql_double_canonical(expr: str) -> str:
    """MySQL side of the double canonical form (see MYSQL_DOUBLE_TEXT_SQL)."""
    return (f"IF(ABS({expr}) >= {DOUBLE_INTEGRAL_MIN} AND ABS({expr}) < {DOUBLE_INTEGRAL_MAX}, "
            f"CAST(CAST({expr} AS SIGNED) AS CHAR), {expr})")


def ensure_functions(pg_conn: Any, schema: str) -> None:
    with pg_conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('clinicflow.verify.functions'))")
        cur.execute(MYSQL_DOUBLE_TEXT_SQL.format(schema=quote_ident(schema, "postgres")))
    pg_conn.commit()


def _my(col: PgColumn) -> str:
    q = quote_ident(col.name, "mysql")
    kind = col.kind
    if kind is Kind.integer:
        value = f"{q} + 0" if col.source.data_type.lower() == "year" else q
    elif kind in (Kind.decimal, Kind.boolean_int):
        value = q
    elif kind is Kind.double:
        value = mysql_double_canonical(q)
    elif kind is Kind.float:
        value = mysql_double_canonical(f"CAST({q} AS DOUBLE)")
    elif kind is Kind.time:
        value = q if col.fraction_digits == 0 else f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({q} AS CHAR)))"
    elif kind in (Kind.date, Kind.datetime):
        return f"IF({q} IS NULL OR {zero_date_test(q)}, X'5C4E', {q})"
    elif kind is Kind.text:
        value = _escaped_text(f"REPLACE({_as_utf8_binary(col, q)}, X'00', X'')")
    elif kind is Kind.binary:
        value = f"LOWER(HEX({q}))"
    elif kind is Kind.bit1:
        value = f"{q} + 0"
    elif kind is Kind.bits:
        value = f"LPAD(BIN({q} + 0), {col.bit_length}, '0')"
    elif kind is Kind.json:
        value = f"IF({q} IS NULL, NULL, 'json')"
    else:  # pragma: no cover - every kind is handled above
        raise AssertionError(kind)
    return f"IFNULL({value}, X'5C4E')"


def _pg(col: PgColumn, function_schema: str) -> str:
    q = quote_ident(col.name, "postgres")
    kind = col.kind
    fn = quote_qualified(function_schema, "mysql_double_text", "postgres")
    if kind in (Kind.integer, Kind.decimal, Kind.time, Kind.bits, Kind.date):
        value = f"{q}::text"
    elif kind is Kind.double:
        value = f"{fn}({q})"
    elif kind is Kind.float:
        value = f"{fn}({q}::float8)"
    elif kind in (Kind.boolean_int, Kind.bit1):
        value = f"{q}::int::text"
    elif kind is Kind.datetime:
        digits = col.fraction_digits
        value = f"{q}::text" if digits == 0 else f"to_char({q}, 'YYYY-MM-DD HH24:MI:SS.FF{digits}')"
    elif kind is Kind.text:
        value = (f"replace(replace(replace(replace({q}, E'\\\\', E'\\\\\\\\'), E'\\t', E'\\\\t'), "
                 f"E'\\n', E'\\\\n'), E'\\r', E'\\\\r')")
    elif kind is Kind.binary:
        value = f"encode({q}, 'hex')"
    elif kind is Kind.json:
        value = f"CASE WHEN {q} IS NULL THEN NULL ELSE 'json' END"
    else:  # pragma: no cover
        raise AssertionError(kind)
    return f"COALESCE({value}, E'\\\\N')"


def canonical_mysql(plan: TablePlan) -> str:
    """MySQL expression: the canonical text of a row (columns in plan order, tab-separated)."""
    return "CONCAT_WS(X'09', " + ", ".join(_my(c) for c in plan.columns) + ")"


def canonical_postgres(plan: TablePlan) -> str:
    """PostgreSQL expression: the same canonical text from the loaded row."""
    return "concat_ws(E'\\t', " + ", ".join(_pg(c, plan.state_schema) for c in plan.columns) + ")"


# ---------------------------------------------------------------------------

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
            for label, count, keys in (("missing in raw", self.missing_count, self.missing_in_raw),
                                       ("only in raw", self.extra_count, self.extra_in_raw),
                                       ("values differ", self.changed_count, self.changed)):
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

    @property
    def ok(self) -> bool:
        return not self.diffs

    @property
    def only_extra_rows(self) -> bool:
        """Every difference is a row still in raw that the source deleted (deletes not reconciled)."""
        return bool(self.diffs) and all(
            d.compared and d.extra_count and not d.missing_count and not d.changed_count for d in self.diffs)

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "stale" if self.only_extra_rows else "differs"

    def summary(self) -> str:
        if self.ok:
            return f"table {self.table!r}: {self.source_rows} rows, {self.buckets} checksummed ranges equal"
        head = (f"table {self.table!r}: source {self.source_rows} rows, raw {self.raw_rows}; "
                f"{len(self.diffs)} of {self.buckets} key ranges differ: ")
        return head + " | ".join(d.describe() for d in self.diffs[:5]) + (" | ..." if len(self.diffs) > 5 else "")


def _bucket_column(plan: TablePlan) -> PgColumn | None:
    if not plan.primary_key:
        return None
    col = plan.column(plan.primary_key[0])
    return col if col.kind is Kind.integer else None


def _pg_bucket_expr(col: PgColumn, width: int) -> str:
    q = quote_ident(col.name, "postgres")
    return f"div({q}, {width})" if col.pg_type.startswith("numeric") else f"({q} / {width})"


def _bucket_width(mysql_conn: Any, plan: TablePlan, column: PgColumn, batch_rows: int) -> tuple[int, int]:
    q = quote_ident(column.name, "mysql")
    with mysql_conn.cursor() as cur:
        cur.execute(f"SELECT MIN({q}), MAX({q}), COUNT(*) FROM {quote_ident(plan.table, 'mysql')}")
        lo, hi, count = cur.fetchone()
    lo, hi, count = int(_text(lo) or 0), int(_text(hi) or 0), int(_text(count) or 0)
    if count == 0:
        return 1, 0
    buckets = max(1, math.ceil(count / max(1, batch_rows)))
    return max(1, math.ceil((hi - lo + 1) / buckets)), count


def verify_table(mysql_conn: Any, pg_conn: Any, plan: TablePlan, *, bucket_rows: int | None = None) -> VerifyResult:
    """Compare raw.<table> with the replica table: counts and checksums per key range, then keys.

    ``mysql_conn`` must come from :func:`clinicflow.pgload.mysql_connect`
    (same session time zone as the load).
    """
    result = VerifyResult(plan.table)
    column = _bucket_column(plan)
    width = 1
    if column is not None:
        width, _ = _bucket_width(mysql_conn, plan, column, bucket_rows or plan.batch_size)
        my_bucket = f"{quote_ident(column.name, 'mysql')} DIV {width}"
        pg_bucket = _pg_bucket_expr(column, width)
    else:
        my_bucket, pg_bucket = "0", "0"
    my_sum = f"SUM(CAST(CONV(LEFT(MD5({canonical_mysql(plan)}), 15), 16, 10) AS UNSIGNED))"
    pg_sum = f"sum(('x' || left(md5({canonical_postgres(plan)}), 15))::bit(60)::bigint)"
    def source_sums() -> dict[int, tuple[int, int]]:
        with mysql_conn.cursor() as cur:
            # GROUP BY 1, not an alias: both servers resolve a GROUP BY name to a column
            # first, and MySQL's names ignore case (a column `B` once took over alias b).
            cur.execute(f"SELECT {my_bucket}, COUNT(*), {my_sum} FROM {quote_ident(plan.table, 'mysql')} GROUP BY 1")
            return {int(_text(b) or 0): (int(_text(n) or 0), int(_text(s) or 0)) for b, n, s in cur.fetchall()}

    # Both servers checksum at the same time: the wait is the slower side, not the sum.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clinicflow-verify") as pool:
        source_future = pool.submit(source_sums)
        with pg_conn.cursor() as cur:
            cur.execute("SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; "
                        "SET LOCAL extra_float_digits = 1")
            cur.execute(f"SELECT {pg_bucket}, count(*), {pg_sum} FROM "
                        f"{quote_qualified(plan.raw_schema, plan.table, 'postgres')} GROUP BY 1")
            raw = {int(b): (int(n), int(s or 0)) for b, n, s in cur.fetchall()}
        source = source_future.result()
    pg_conn.rollback()
    result.source_rows = sum(v[0] for v in source.values())
    result.raw_rows = sum(v[0] for v in raw.values())
    result.buckets = len(set(source) | set(raw))
    for bucket in sorted(set(source) | set(raw)):
        s_rows, s_sum = source.get(bucket, (0, 0))
        r_rows, r_sum = raw.get(bucket, (0, 0))
        if (s_rows, s_sum) == (r_rows, r_sum):
            continue
        if column is not None:
            lo, hi = bucket * width, bucket * width + width - 1
            if bucket < 0:
                lo, hi = bucket * width - width + 1, bucket * width
            key_range = f"{column.name} {lo}..{hi}"
        else:
            key_range = "(whole table)"
        diff = BucketDiff(bucket, key_range, s_rows, r_rows)
        if max(s_rows, r_rows) <= DRILLDOWN_MAX_ROWS and plan.primary_key:
            _drill_down(mysql_conn, pg_conn, plan, diff, my_bucket, pg_bucket, bucket)
        result.diffs.append(diff)
    return result


def _drill_down(mysql_conn: Any, pg_conn: Any, plan: TablePlan, diff: BucketDiff, my_bucket: str,
                pg_bucket: str, bucket: int) -> None:
    """Compare one bucket key by key (keys and row hashes only)."""
    keys_my = quote_list(list(plan.primary_key), "mysql")
    keys_pg = quote_list(list(plan.primary_key), "postgres")
    with mysql_conn.cursor() as cur:
        cur.execute(f"SELECT CONCAT_WS(',', {keys_my}), MD5({canonical_mysql(plan)}) "
                    f"FROM {quote_ident(plan.table, 'mysql')} WHERE {my_bucket} = %s", (bucket,))
        source = {_text(k): _text(h) for k, h in cur.fetchall()}
    with pg_conn.cursor() as cur:
        cur.execute("SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; "
                    "SET LOCAL extra_float_digits = 1")
        cur.execute(f"SELECT concat_ws(',', {keys_pg}), md5({canonical_postgres(plan)}) "
                    f"FROM {quote_qualified(plan.raw_schema, plan.table, 'postgres')} WHERE {pg_bucket} = %s",
                    (bucket,))
        raw = dict(cur.fetchall())
    pg_conn.rollback()
    missing = sorted(k for k in source if k not in raw)
    extra = sorted(k for k in raw if k not in source)
    changed = sorted(k for k in source if k in raw and source[k] != raw[k])
    diff.compared = True
    diff.missing_count, diff.extra_count, diff.changed_count = len(missing), len(extra), len(changed)
    diff.missing_in_raw, diff.extra_in_raw, diff.changed = (missing[:EXAMPLE_KEYS], extra[:EXAMPLE_KEYS],
                                                            changed[:EXAMPLE_KEYS])


# ---------------------------------------------------------------------------
# Delete reconciliation

RECONCILE_CHUNK = 10_000


def reconcile_deletes(source_conn: Any, target_conn: Any, plan: TablePlan, *, target_dialect: str = "postgres",
                      chunk_rows: int = RECONCILE_CHUNK) -> int:
    """Delete from the target table the rows whose key no longer exists in the source; return how many.

    The source is a MySQL connection (:func:`clinicflow.pgload.mysql_connect`);
    the target is raw in PostgreSQL (default) or, with ``target_dialect="mysql"``,
    the replica table itself (reconciled against the OpenDental source).
    Walks the target's keys in key order, ``chunk_rows`` at a time (keyset
    pages from the chunk planner); asks the source which of them exist (a key
    range for an integer key, a key list otherwise); deletes the rest and
    commits per chunk.
    """
    from clinicflow.chunks import keyset_after

    if not plan.primary_key:
        return 0
    dialect = target_dialect
    pk = list(plan.primary_key)
    target = (quote_qualified(plan.raw_schema, plan.table, "postgres") if dialect == "postgres"
              else quote_ident(plan.table, "mysql"))
    keys_sql = quote_list(pk, dialect)  # type: ignore[arg-type]
    single_int = len(pk) == 1 and plan.column(pk[0]).kind is Kind.integer
    binary = [plan.column(k).kind is Kind.binary for k in pk]
    deleted = 0
    last: list[Any] | None = None
    while True:
        predicate, params = keyset_after(pk, last, dialect)  # type: ignore[arg-type]
        with target_conn.cursor() as cur:
            cur.execute(f"SELECT {keys_sql} FROM {target} WHERE {predicate} ORDER BY {keys_sql} LIMIT %s",
                        (*params, chunk_rows))
            keys = [tuple(_native(v) for v in r) for r in cur.fetchall()]
        target_conn.rollback()
        if not keys:
            return deleted
        if single_int:
            keys = [(int(k[0]),) for k in keys]
        existing = _existing_keys(source_conn, plan, keys, single_int)
        gone = [k for k in keys if _key_text(k, binary) not in existing]
        if gone:
            with target_conn.cursor() as cur:
                placeholders = "(" + ", ".join(["%s"] * len(pk)) + ")"
                for start in range(0, len(gone), 1000):
                    part = gone[start:start + 1000]
                    cur.execute(f"DELETE FROM {target} WHERE ({keys_sql}) IN ({', '.join([placeholders] * len(part))})",
                                [v for k in part for v in k])
                    deleted += max(cur.rowcount, 0)
            target_conn.commit()
        last = list(keys[-1])
        if len(keys) < chunk_rows:
            return deleted


def _native(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def _key_text(key: tuple[Any, ...], binary: list[bool]) -> tuple[str, ...]:
    out = []
    for value, is_binary in zip(key, binary):
        if is_binary:
            out.append(bytes(value).hex())
        else:
            out.append(_text(value) or "")
    return tuple(out)


def _existing_keys(mysql_conn: Any, plan: TablePlan, keys: list[tuple[Any, ...]], single_int: bool) -> set[tuple[str, ...]]:
    pk = list(plan.primary_key)
    table = quote_ident(plan.table, "mysql")
    select_keys = ", ".join(
        f"LOWER(HEX({quote_ident(k, 'mysql')}))" if plan.column(k).kind is Kind.binary else quote_ident(k, "mysql")
        for k in pk)
    found: set[tuple[str, ...]] = set()
    with mysql_conn.cursor() as cur:
        if single_int:
            cur.execute(f"SELECT {select_keys} FROM {table} WHERE {quote_ident(pk[0], 'mysql')} BETWEEN %s AND %s",
                        (int(keys[0][0]), int(keys[-1][0])))
            found.update((_text(r[0]) or "",) for r in cur.fetchall())
            return found
        for start in range(0, len(keys), 1000):
            part = keys[start:start + 1000]
            placeholders = "(" + ", ".join(["%s"] * len(pk)) + ")"
            values = ", ".join([placeholders] * len(part))
            cur.execute(f"SELECT {select_keys} FROM {table} WHERE ({quote_list(pk, 'mysql')}) IN ({values})",
                        [v for k in part for v in k])
            found.update(tuple(_text(v) or "" for v in r) for r in cur.fetchall())
    return found
