"""The canonical text of a row on both servers, the one verification compares (:mod:`.verify`).

The same text, column by column, from MariaDB's values in the replica and from PostgreSQL's values in raw:
each side is printed by its own server's SQL, never by the loader's encoder, so a wrong value in raw shows.
"""

from __future__ import annotations

from clinicflow.core.dbapi import PgConnection
from clinicflow.core.sql import quote_ident, quote_qualified
from clinicflow.opendental.tables.typemap import Kind, PgColumn, is_streamed
from clinicflow.opendental.warehouse.copy_encoding import (
    _NEEDS_ESCAPE,
    _as_utf8_binary,
    _escaped_text,
    _holds_utf8_bytes,
    zero_date_test,
)
from clinicflow.opendental.warehouse.load_plan import LoadPlan

# PostgreSQL prints double precision differently from MariaDB: other exponent
# thresholds and form, and (for integral values of 2^53 and more) sometimes a
# 17th digit where MariaDB's shortest form has 16. So the canonical form of a
# double is, on both sides: the exact integer for 2^53 <= |v| < 9.2e18, else
# the shortest digits laid out as MariaDB does (fixed notation for decimal
# exponents -15..14, and for exponent 15 with 17 digits; otherwise
# d.ddde±x without padding or '+'). tests/integration/opendental/warehouse/test_pgload.py checks this
# on random doubles against MariaDB itself.
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
    return (
        f"IF(ABS({expr}) >= {DOUBLE_INTEGRAL_MIN} AND ABS({expr}) < {DOUBLE_INTEGRAL_MAX}, "
        f"CAST(CAST({expr} AS SIGNED) AS CHAR), {expr})"
    )


def ensure_functions(pg_conn: PgConnection, schema: str) -> None:
    with pg_conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('clinicflow.opendental.warehouse.verify.functions'))")
        cur.execute(MYSQL_DOUBLE_TEXT_SQL.format(schema=quote_ident(schema, "postgres")))
    pg_conn.commit()


def _my(col: PgColumn) -> str:
    q = col.carried_sql(quote_ident(col.name, "mysql"))
    kind = col.kind
    # "+ 0" prints the number, not its display form: YEAR, and ZEROFILL's padding ("00042" is 42 in raw).
    zerofill = "zerofill" in col.source.column_type.lower()
    if kind is Kind.integer:
        value = f"{q} + 0" if col.source.data_type.lower() == "year" or zerofill else q
    elif kind in (Kind.decimal, Kind.boolean_int):
        value = f"{q} + 0" if zerofill else q
    elif kind is Kind.double:
        value = mysql_double_canonical(q)
    elif kind is Kind.float:
        value = mysql_double_canonical(f"CAST({q} AS DOUBLE)")
    elif kind is Kind.time:
        value = q if col.fraction_digits == 0 else f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({q} AS CHAR)))"
    elif kind in (Kind.date, Kind.datetime, Kind.instant):
        null_test = f"{q} IS NULL OR " if col.source.nullable else ""
        return f"IF({null_test}{zero_date_test(q)}, X'5C4E', {q})"
    elif kind is Kind.text and is_streamed(col.source.data_type):
        # MD5 of the UTF-8, NUL-free bytes; no CAST (NULL past max_allowed_packet) when they are UTF-8 already.
        binary = q if _holds_utf8_bytes(col) else _as_utf8_binary(col, q)
        # LIKE BINARY '%<NUL>%' tests the bytes in place: INSTR searched character by character (3.5x).
        value = f"IF({binary} LIKE BINARY X'250025', MD5(REPLACE({binary}, X'00', X'')), MD5({binary}))"
    elif kind is Kind.text:
        binary = _as_utf8_binary(col, q)
        # Most values hold nothing to escape or remove: one RLIKE spares them five REPLACEs.
        without_nul = f"REPLACE({binary}, X'00', X'')"
        value = f"IF({binary} RLIKE {_NEEDS_ESCAPE}, {_escaped_text(without_nul)}, {binary})"
    elif kind is Kind.binary:
        value = f"MD5({q})" if is_streamed(col.source.data_type) else f"LOWER(HEX({q}))"
    elif kind is Kind.bit1:
        value = f"{q} + 0"
    elif kind is Kind.bits:
        value = f"LPAD(BIN({q} + 0), {col.bit_length}, '0')"
    elif kind is Kind.json:
        value = f"IF({q} IS NULL, NULL, 'json')"
    else:  # pragma: no cover - every kind is handled above
        raise AssertionError(kind)
    # A NOT NULL column needs no NULL marker (one function call less per value).
    return f"IFNULL({value}, X'5C4E')" if col.source.nullable or kind is Kind.json else value


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
    elif kind in (Kind.datetime, Kind.instant):
        digits = col.fraction_digits
        # An instant as UTC wall-clock text, as the replica's UTC session prints it.
        wall = f"({q} AT TIME ZONE 'UTC')" if kind is Kind.instant else q
        value = f"{wall}::text" if digits == 0 else f"to_char({wall}, 'YYYY-MM-DD HH24:MI:SS.FF{digits}')"
    elif kind in (Kind.text, Kind.binary) and is_streamed(col.source.data_type):
        value = f"md5({q})"
    elif kind is Kind.text:
        value = (
            f"replace(replace(replace(replace({q}, E'\\\\', E'\\\\\\\\'), E'\\t', E'\\\\t'), "
            f"E'\\n', E'\\\\n'), E'\\r', E'\\\\r')"
        )
    elif kind is Kind.binary:
        value = f"encode({q}, 'hex')"
    elif kind is Kind.json:
        value = f"CASE WHEN {q} IS NULL THEN NULL ELSE 'json' END"
    else:  # pragma: no cover
        raise AssertionError(kind)
    return f"COALESCE({value}, E'\\\\N')"


def canonical_mysql(plan: LoadPlan) -> str:
    """MySQL expression: the canonical text of a row (columns in plan order, tab-separated)."""
    return "CONCAT_WS(X'09', " + ", ".join(_my(c) for c in plan.columns) + ")"


def canonical_postgres(plan: LoadPlan) -> str:
    """PostgreSQL expression: the same canonical text from the loaded row."""
    return "concat_ws(E'\\t', " + ", ".join(_pg(c, plan.state_schema) for c in plan.columns) + ")"


def key_text_mysql(plan: LoadPlan) -> str:
    """MySQL expression: the primary key's canonical text."""
    return "CONCAT_WS(X'09', " + ", ".join(_my(plan.column(k)) for k in plan.primary_key) + ")"


def key_text_postgres(plan: LoadPlan) -> str:
    """PostgreSQL expression: the same key text from the loaded row."""
    return "concat_ws(E'\\t', " + ", ".join(_pg(plan.column(k), plan.state_schema) for k in plan.primary_key) + ")"
