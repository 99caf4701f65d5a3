"""THE MySQL/MariaDB → PostgreSQL type mapping used by the loader.

One plain function, :func:`map_column`, decides for every source column the
PostgreSQL type and the *value class* (:class:`Kind`) that tells the loader
how the MySQL server must encode the value for COPY and how verification
computes its canonical form. The table in docs/loading.md is this module in
prose; tests/unit/opendental/test_loading_doc.py checks every row of it against
:func:`map_column`. A new type is added here: its PostgreSQL type, its Kind, and
(when the column's own value is not what travels, as for spatial types) the
expression :meth:`PgColumn.carried_sql` gives.

Rules worth knowing (why they are what they are):

* ``bigint(20)`` stays ``bigint`` (OpenDental keys), never ``numeric``;
  unsigned integers are widened one step so every value fits
  (``bigint unsigned`` → ``numeric(20)``).
* ``tinyint(1)`` is a small integer in MySQL (OpenDental stores 0..n flags
  in it), so it maps to ``smallint``; only columns listed in tables.yml
  ``boolean_columns`` become ``boolean``.
* Dates may be ``'0000-00-00'`` (or have a zero month/day) in MySQL; they
  become NULL and are counted, so date columns are always nullable in
  PostgreSQL. ``'0001-01-01'`` is a real date and is kept.
* ``time`` is a duration in MySQL (-838:59:59..838:59:59) → ``interval``.
* ``timestamp`` is an instant (MySQL stores it in UTC) → ``timestamptz``, read
  in a UTC session so no DST hour folds; ``datetime`` is a wall clock → ``timestamp``.
* Spatial values travel as their standard WKB (``ST_AsBinary``) in ``bytea``
  (PostGIS reads it with ``ST_GeomFromWKB``); the column's SRID is not carried.
* Column names longer than PostgreSQL's 63 bytes fail the table, naming it:
  PostgreSQL would cut them silently.
* Types not in the table fail the table with the column and type named:
  guessing ``text`` for an unknown type is how the old system lost data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from clinicflow.connectors.mysql.catalog import CatalogColumn
from clinicflow.core.errors import ClinicflowError


class Kind(str, Enum):  # noqa: UP042 - f-strings print "Cls.member"; StrEnum would change messages
    """How a value travels from MySQL to PostgreSQL and how it is compared."""

    integer = "integer"  # signed/unsigned integers, year
    decimal = "decimal"  # decimal(p,s)
    double = "double"  # double
    float = "float"  # float → real (sent with double precision so the float32 round-trips)
    date = "date"  # zero dates → NULL
    datetime = "datetime"  # datetime (wall clock); zero dates → NULL
    instant = "instant"  # timestamp (UTC instant) → timestamptz; zero dates → NULL
    time = "time"  # → interval
    text = "text"  # char/varchar/text/enum/set; NUL bytes removed
    binary = "binary"  # binary/varbinary/blob → bytea
    boolean_int = "boolean_int"  # tinyint listed in boolean_columns: 0/1 only
    bit1 = "bit1"  # bit(1) → boolean
    bits = "bits"  # bit(n) → bit varying(n)
    json = "json"  # MariaDB json (longtext + json_valid check) → jsonb


class UnsupportedTypeError(ClinicflowError, ValueError):
    """A source column whose type has no faithful PostgreSQL mapping."""


@dataclass(frozen=True)
class PgColumn:
    """The PostgreSQL side of one column."""

    name: str
    pg_type: str
    kind: Kind
    nullable: bool
    source: CatalogColumn

    @property
    def bit_length(self) -> int:
        """n of bit(n) (only for Kind.bits)."""
        return int(self.source.numeric_precision or 1)

    def carried_sql(self, quoted: str) -> str:
        """The MySQL expression whose value is carried (spatial: WKB; uuid, inet4/6: text; else the column)."""
        data_type = self.source.data_type.lower().strip()
        if data_type in SPATIAL_TYPES:
            return f"ST_AsBinary({quoted})"
        if data_type in _PRINTED_TEXT:
            return f"CAST({quoted} AS CHAR CHARACTER SET utf8mb4)"
        return quoted

    @property
    def fraction_digits(self) -> int:
        """Fractional-second digits of datetime/timestamp/time columns."""
        return int(self.source.datetime_precision or 0)


_SIGNED_INT = {
    "tinyint": "smallint",
    "smallint": "smallint",
    "mediumint": "integer",
    "int": "integer",
    "integer": "integer",
    "bigint": "bigint",
}
_UNSIGNED_INT = {
    "tinyint": "smallint",
    "smallint": "integer",
    "mediumint": "integer",
    "int": "bigint",
    "integer": "bigint",
    "bigint": "numeric(20)",
}
_TEXT = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"}
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
SPATIAL_TYPES = frozenset(
    {
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
    }
)
# MariaDB types whose value travels as the text MariaDB prints (their bytes are a binary form).
_PRINTED_TEXT = frozenset({"uuid", "inet4", "inet6"})
PG_IDENT_BYTES = 63
_DISPLAY_WIDTH = re.compile(r"^\s*tinyint\s*\(\s*1\s*\)", re.IGNORECASE)


def map_column(column: CatalogColumn, *, boolean: bool = False) -> PgColumn:
    """The PostgreSQL type and value class of one MySQL column.

    ``boolean=True`` when tables.yml lists the column in ``boolean_columns``;
    only an integer column may be loaded as boolean.
    """
    data_type = column.data_type.lower().strip()
    column_type = column.column_type.lower()
    unsigned = "unsigned" in column_type
    nullable = column.nullable

    def out(pg_type: str, kind: Kind, *, force_nullable: bool = False) -> PgColumn:
        return PgColumn(column.name, pg_type, kind, nullable or force_nullable, column)

    if len(column.name.encode("utf-8")) > PG_IDENT_BYTES:
        raise UnsupportedTypeError(
            f"column {column.name!r} has a name of {len(column.name.encode('utf-8'))} bytes; PostgreSQL keeps "
            f"{PG_IDENT_BYTES} and would cut it: rename it at the source or exclude the table"
        )

    if boolean:
        if data_type not in _SIGNED_INT:
            raise UnsupportedTypeError(
                f"column {column.name!r} ({column.column_type}) is listed in boolean_columns "
                "but only integer columns (tinyint(1)) can be loaded as boolean"
            )
        return out("boolean", Kind.boolean_int)
    if data_type in _SIGNED_INT:
        return out((_UNSIGNED_INT if unsigned else _SIGNED_INT)[data_type], Kind.integer)
    if data_type == "year":
        return out("smallint", Kind.integer)
    if data_type in ("decimal", "numeric"):
        precision = int(column.numeric_precision or 10)
        scale = int(column.numeric_scale or 0)
        return out(f"numeric({precision},{scale})", Kind.decimal)
    if data_type in ("double", "double precision", "real"):
        return out("double precision", Kind.double)
    if data_type == "float":
        return out("real", Kind.float)
    if data_type == "date":
        return out("date", Kind.date, force_nullable=True)
    if data_type in ("datetime", "timestamp"):
        digits = int(column.datetime_precision or 0)
        pg = "timestamp" if data_type == "datetime" else "timestamptz"
        kind = Kind.datetime if data_type == "datetime" else Kind.instant
        return out(pg if digits == 0 else f"{pg}({digits})", kind, force_nullable=True)
    if data_type == "time":
        return out("interval", Kind.time)
    if data_type == "json" or (data_type == "longtext" and column.is_json):
        return out("jsonb", Kind.json)
    if data_type in _TEXT or data_type in _PRINTED_TEXT:
        return out("text", Kind.text)
    if data_type in _BINARY or data_type in SPATIAL_TYPES:
        return out("bytea", Kind.binary)
    if data_type == "bit":
        bits = int(column.numeric_precision or 1)
        if bits == 1:
            return out("boolean", Kind.bit1)
        return out(f"bit varying({bits})", Kind.bits)
    raise UnsupportedTypeError(
        f"column {column.name!r} has type {column.column_type!r}, which has no faithful PostgreSQL mapping; "
        "exclude the table or add a mapping to clinicflow/opendental/tables/typemap.py"
    )


def carry_problem(name: str, data_type: str, column_type: str) -> str | None:
    """Why a source column cannot be carried into PostgreSQL (name and type named), or None: for analysis."""
    try:
        map_column(CatalogColumn(name, data_type, column_type))
    except UnsupportedTypeError as exc:
        return str(exc)
    return None


def is_tinyint1(column: CatalogColumn) -> bool:
    """True for ``tinyint(1)`` (the only type tables.yml boolean_columns is meant for)."""
    return bool(_DISPLAY_WIDTH.match(column.column_type))


# Safe in-place widenings of an existing raw column: (old type, new type).
# Anything else that differs is an incompatible change and fails the table.
_WIDER_INTEGERS = ["smallint", "integer", "bigint", "numeric(20,0)"]


def is_compatible_change(old_pg_type: str, new_pg_type: str) -> bool:
    """Whether a raw column of ``old_pg_type`` can take values of ``new_pg_type`` after ALTER ... TYPE.

    Integer widening, real → double precision, wider numeric(p,s) and longer
    bit varying keep every stored value exact; nothing else is accepted.
    """
    old, new = normalize_pg_type(old_pg_type), normalize_pg_type(new_pg_type)
    if old == new:
        return True
    if old in _WIDER_INTEGERS and new in _WIDER_INTEGERS:
        return _WIDER_INTEGERS.index(new) >= _WIDER_INTEGERS.index(old)
    if old == "real" and new == "double precision":
        return True
    old_num, new_num = _numeric_args(old), _numeric_args(new)
    if old in ("smallint", "integer", "bigint") and new_num is not None:
        digits = {"smallint": 5, "integer": 10, "bigint": 19}[old]
        return new_num[0] - new_num[1] >= digits
    if old_num and new_num:
        return new_num[1] >= old_num[1] and new_num[0] - new_num[1] >= old_num[0] - old_num[1]
    old_bits, new_bits = _bit_varying_args(old), _bit_varying_args(new)
    if old_bits is not None and new_bits is not None:
        return new_bits >= old_bits
    return False


def normalize_pg_type(pg_type: str) -> str:
    """One spelling per type, as PostgreSQL's format_type() prints it."""
    text = re.sub(r"\s+", " ", pg_type.strip().lower())
    text = re.sub(r"\s*\(\s*", "(", text)
    text = re.sub(r"\s*,\s*", ",", text)
    text = re.sub(r"\s*\)", ")", text)
    aliases = {
        "timestamp without time zone": "timestamp",
        "int2": "smallint",
        "int4": "integer",
        "int8": "bigint",
        "float8": "double precision",
        "float4": "real",
        "bool": "boolean",
        "timestamp with time zone": "timestamptz",
    }
    if text.startswith("timestamp(") and text.endswith("without time zone"):
        text = text[: -len(" without time zone")]
    if text.startswith("timestamp(") and text.endswith(" with time zone"):
        text = "timestamptz" + text[len("timestamp") : -len(" with time zone")]
    if text.startswith("numeric(") and "," not in text:
        text = text[:-1] + ",0)"
    return aliases.get(text, text)


def _numeric_args(pg_type: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"numeric\((\d+),(\d+)\)", pg_type)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _bit_varying_args(pg_type: str) -> int | None:
    match = re.fullmatch(r"bit varying\((\d+)\)", pg_type)
    return int(match.group(1)) if match else None


# Source types whose values may exceed max_allowed_packet once escaped and make MariaDB's REPLACE()
# quadratic: they travel as the column's own bytes, escaped by the client (docs/loading.md "Large values").
STREAMED_TYPES = frozenset({"mediumtext", "longtext", "mediumblob", "longblob", "json"})


def is_streamed(data_type: str) -> bool:
    """True when a column of this MySQL DATA_TYPE is selected raw and escaped client-side."""
    return data_type.lower().strip() in STREAMED_TYPES
