"""Schema analysis: write tables.yml from a live OpenDental source, and check it against the source.

Plain functions, no Prefect. The flow (``flows/analyze_schema.py``), the CLI
(``clinicflow/commands/schema.py``) and the nightly flow (``check_drift``)
call these.

How one table's settings are chosen (see docs/schema_analysis.md):

* ``primary_key``, columns, ``estimated_rows`` / ``estimated_size_mb`` come from
  ``information_schema`` (three queries for the whole database; ``TABLE_ROWS``
  and ``DATA_LENGTH``, never a ``COUNT(*)``).
* The watermark: ``timestamp``/``datetime`` columns that track edits
  (``DateTStamp``, ``SecDateTEdit``, any column with ``ON UPDATE
  current_timestamp()``) are preferred over entry-date columns
  (``SecDateTEntry``, ``DateTEntry``), which see inserts but not updates. Each
  candidate is checked on a bounded sample (the newest rows by primary key, or
  the whole table when it is small): enough real values (NULL, zero dates and
  ``'0001-01-01'`` do not count) and no value outside a plausible range (a
  future value would freeze the watermark). With no usable column, a single
  auto-increment key is the watermark (append-only tables such as
  ``securitylog``).
* ``extraction_strategy`` by size: tiny tables are copied fully (cheap, and a
  full copy also carries deletes), large ones ``incremental_chunked``, the rest
  ``incremental``; a table with no key or no watermark is copied fully.
* ``batch_size`` from the row width (a chunk of about ``target_chunk_mb``), the
  tier from a configurable list of critical tables.

The rendered file is deterministic (tables sorted, fixed field order, own
emitter) and keeps the hand-edited ``overrides:`` section byte for byte.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from blocks.databases import MySQLServer
from clinicflow.config import (
    ExtractionStrategy,
    TableConfig,
    TablesConfig,
    parse_tables_config,
    reserved_name_error,
    yaml_error_line,
    yaml_load,
)
from clinicflow.logs import get_logger
from clinicflow.sql import IdentifierError, quote_ident, quote_list, validate_table_name

MIB = 1024 * 1024

# Values below this are "unset" in OpenDental ('0001-01-01') or MySQL zero
# dates ('0000-00-00'): they are not evidence for or against a watermark.
UNSET_DATE_LIMIT = "0001-01-02 00:00:00"

DEFAULT_CRITICAL_TABLES: tuple[str, ...] = (
    "patient",
    "appointment",
    "procedurelog",
    "claimproc",
    "claim",
    "payment",
    "paysplit",
    "adjustment",
    "insplan",
    "inssub",
    "patplan",
    "provider",
)


class AnalysisError(RuntimeError):
    """The analysis cannot produce a valid tables.yml. The message names the table or field."""


@dataclass(frozen=True)
class AnalysisRules:
    """The knobs of the analysis. Defaults suit an OpenDental practice database."""

    # Edit-tracking columns, best first. Columns with ON UPDATE current_timestamp()
    # rank right after these; entry-date columns come last.
    edit_columns: tuple[str, ...] = ("DateTStamp", "SecDateTEdit")
    entry_columns: tuple[str, ...] = ("SecDateTEntry", "DateTEntry")
    critical_tables: tuple[str, ...] = DEFAULT_CRITICAL_TABLES
    critical_tier: int = 1
    default_tier: int = 3
    # Tables with at most this many rows are copied fully every night.
    full_copy_max_rows: int = 1_000
    # Tables with at least this many rows, or this size, are split into key ranges.
    chunked_min_rows: int = 500_000
    chunked_min_mb: float = 256.0
    # batch_size aims at chunks of about this size, within these bounds.
    target_chunk_mb: float = 16.0
    min_batch_size: int = 1_000
    max_batch_size: int = 200_000
    # Sampling: tables up to small_table_rows are read whole; larger ones by
    # their newest sample_rows rows along the primary key index.
    sample_rows: int = 5_000
    small_table_rows: int = 50_000
    # A watermark candidate needs this share of real values in the sample.
    min_real_share: float = 0.95
    earliest_plausible: str = "1980-01-01 00:00:00"
    future_tolerance: timedelta = timedelta(days=1)

    def tier_of(self, table: str) -> int:
        critical = {name.lower() for name in self.critical_tables}
        return self.critical_tier if table.lower() in critical else self.default_tier


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    data_type: str  # e.g. "timestamp"
    column_type: str  # e.g. "bigint(20) unsigned"
    nullable: bool
    extra: str  # e.g. "auto_increment", "on update current_timestamp()"

    @property
    def on_update(self) -> bool:
        return "on update" in self.extra.lower()

    @property
    def auto_increment(self) -> bool:
        return "auto_increment" in self.extra.lower()

    @property
    def definition(self) -> str:
        """Type, nullability and the attributes that matter for copying, as recorded in tables.yml."""
        parts = [self.column_type.lower()]
        if not self.nullable:
            parts.append("not null")
        if self.auto_increment:
            parts.append("auto_increment")
        if self.on_update:
            parts.append("on update current_timestamp()")
        return " ".join(parts)


@dataclass(frozen=True)
class TableInfo:
    name: str
    engine: str
    table_rows: int
    data_length: int
    avg_row_length: int
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]
    # Columns that lead some index: MAX() over them is an index lookup.
    index_leading: frozenset[str]

    def column(self, name: str) -> ColumnInfo | None:
        lowered = name.lower()
        for col in self.columns:
            if col.name.lower() == lowered:
                return col
        return None

    @property
    def auto_increment_key(self) -> str | None:
        """The single auto-increment primary key column, if the key is one."""
        if len(self.primary_key) != 1:
            return None
        col = self.column(self.primary_key[0])
        return col.name if col is not None and col.auto_increment else None

    @property
    def exact_row_count(self) -> bool:
        # MyISAM/Aria keep an exact row count; InnoDB's TABLE_ROWS is an estimate.
        return self.engine.lower() in ("myisam", "aria")


@dataclass(frozen=True)
class SourceSchema:
    database: str
    address: str  # block.describe(): never holds a password
    tables: Mapping[str, TableInfo]

    def fingerprint(self) -> str:
        """sha256 of the structure only (tables, columns, keys): data changes do not move it."""
        canonical = {
            name: {
                "columns": [[c.name, c.definition] for c in info.columns],
                "primary_key": list(info.primary_key),
            }
            for name, info in sorted(self.tables.items())
        }
        payload = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(payload).hexdigest()


def read_schema(server: MySQLServer) -> SourceSchema:
    """Read the whole schema of the block's database with three information_schema queries."""
    conn = server.connect()
    try:
        return read_schema_with(conn, server.database, server.describe())
    finally:
        conn.close()


def read_schema_with(conn: Any, database: str, address: str) -> SourceSchema:
    """Like :func:`read_schema`, on an open pymysql connection."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, COALESCE(ENGINE, ''), COALESCE(TABLE_ROWS, 0), COALESCE(DATA_LENGTH, 0), "
            "COALESCE(AVG_ROW_LENGTH, 0) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
            (database,),
        )
        table_rows = {row[0]: row for row in cur.fetchall()}
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, EXTRA "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        columns: dict[str, list[ColumnInfo]] = {}
        for table, name, data_type, column_type, nullable, extra in cur.fetchall():
            columns.setdefault(table, []).append(
                ColumnInfo(name, str(data_type).lower(), str(column_type), nullable == "YES", str(extra or ""))
            )
        cur.execute(
            "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            (database,),
        )
        primary: dict[str, list[str]] = {}
        leading: dict[str, set[str]] = {}
        for table, index, seq, column in cur.fetchall():
            if index == "PRIMARY":
                primary.setdefault(table, []).append(column)
            if int(seq) == 1:
                leading.setdefault(table, set()).add(column)
    tables = {}
    for name, (_, engine, rows, data_length, avg_row_length) in table_rows.items():
        tables[name] = TableInfo(
            name=name,
            engine=str(engine),
            table_rows=int(rows),
            data_length=int(data_length),
            avg_row_length=int(avg_row_length),
            columns=tuple(columns.get(name, ())),
            primary_key=tuple(primary.get(name, ())),
            index_leading=frozenset(leading.get(name, ())),
        )
    return SourceSchema(database=database, address=address, tables=dict(sorted(tables.items())))


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class ColumnSample:
    """What a bounded sample says about one candidate column."""

    column: str
    sampled: int  # rows looked at
    real: int  # not NULL, not a zero date, not '0001-01-01'
    out_of_range: int  # real values before earliest_plausible or in the future
    min_real: str | None
    max_real: str | None
    whole_table: bool  # the sample was the whole table

    @property
    def real_share(self) -> float:
        return self.real / self.sampled if self.sampled else 0.0


def _tail_source(table: TableInfo, columns: Sequence[str], limit: int | None) -> str:
    """A bounded row source: the newest ``limit`` rows along the primary key index (or all rows)."""
    select = f"SELECT {quote_list(list(columns), 'mysql')} FROM {quote_ident(table.name, 'mysql')}"
    if limit is None:
        return select
    if table.primary_key:
        # Without the hint MariaDB may prefer a full scan plus filesort for ORDER BY ... LIMIT.
        order = ", ".join(f"{quote_ident(c, 'mysql')} DESC" for c in table.primary_key)
        return f"{select} FORCE INDEX (PRIMARY) ORDER BY {order} LIMIT {int(limit)}"
    return f"{select} LIMIT {int(limit)}"


def sample_columns(
    conn: Any, table: TableInfo, columns: Sequence[str], rules: AnalysisRules, now: datetime
) -> dict[str, ColumnSample]:
    """Sample candidate columns of one table in one bounded query."""
    if not columns:
        return {}
    whole = table.table_rows <= rules.small_table_rows
    source = _tail_source(table, columns, None if whole else rules.sample_rows)
    latest = (now + rules.future_tolerance).strftime("%Y-%m-%d %H:%M:%S")
    parts = ["COUNT(*)"]
    params: list[Any] = []
    for name in columns:
        col = quote_ident(name, "mysql")
        real = f"({col} >= %s)"
        parts.append(f"SUM({real})")
        parts.append(f"SUM({real} AND ({col} < %s OR {col} > %s))")
        parts.append(f"CAST(MIN(CASE WHEN {real} THEN {col} END) AS CHAR)")
        parts.append(f"CAST(MAX(CASE WHEN {real} THEN {col} END) AS CHAR)")
        params += [UNSET_DATE_LIMIT, UNSET_DATE_LIMIT, rules.earliest_plausible, latest, UNSET_DATE_LIMIT, UNSET_DATE_LIMIT]
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(parts)} FROM ({source}) AS sample_rows", params)
        row = cur.fetchone()
    sampled = int(row[0] or 0)
    samples = {}
    for i, name in enumerate(columns):
        real, out, lo, hi = row[1 + 4 * i : 5 + 4 * i]
        samples[name] = ColumnSample(name, sampled, int(real or 0), int(out or 0), _text(lo), _text(hi), whole)
    return samples


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def judge_sample(sample: ColumnSample, rules: AnalysisRules) -> str | None:
    """None when the sample supports the column as a watermark, else the reason it does not."""
    if sample.sampled == 0:
        return None  # empty table: no evidence against a column the schema marks as a change column
    if sample.out_of_range:
        return (
            f"{sample.out_of_range} of {sample.sampled} sampled values outside "
            f"[{rules.earliest_plausible}, now + {rules.future_tolerance}] (min {sample.min_real}, max {sample.max_real})"
        )
    if sample.real_share < rules.min_real_share:
        return (
            f"only {sample.real} of {sample.sampled} sampled rows hold a real date "
            f"(NULL, zero dates and 0001-01-01 do not count; need {rules.min_real_share:.0%})"
        )
    return None


def probe_watermark(conn: Any, table: TableInfo, column: str, rules: AnalysisRules) -> str | None:
    """The highest value of a watermark column, found without a full scan of a large table.

    An index lookup when the column leads an index (or is the key), the whole
    table when it is small, else the newest ``sample_rows`` rows by key. None
    when none of these is bounded (large table, no key, no index).
    """
    col = quote_ident(column, "mysql")
    indexed = column in table.index_leading or (table.primary_key[:1] == (column,))
    if indexed or table.table_rows <= rules.small_table_rows:
        source = quote_ident(table.name, "mysql")
    elif table.primary_key:
        source = f"({_tail_source(table, [column], rules.sample_rows)}) AS sample_rows"
    else:
        return None
    info = table.column(column)
    is_date = info is not None and info.data_type in ("timestamp", "datetime", "date")
    where = f" WHERE {col} >= %s" if is_date else ""
    with conn.cursor() as cur:
        cur.execute(f"SELECT CAST(MAX({col}) AS CHAR) FROM {source}{where}", (UNSET_DATE_LIMIT,) if is_date else ())
        row = cur.fetchone()
    return _text(row[0]) if row else None


# --------------------------------------------------------------------------- choices


@dataclass(frozen=True)
class Watermark:
    columns: tuple[str, ...]  # empty: no usable watermark
    reason: str
    rejected: tuple[tuple[str, str], ...] = ()  # (column, why not)


def candidate_columns(table: TableInfo, rules: AnalysisRules) -> list[str]:
    """Watermark candidates in preference order: edit columns, ON UPDATE columns, entry columns."""
    dated = [c for c in table.columns if c.data_type in ("timestamp", "datetime")]
    by_name = {c.name.lower(): c for c in dated}
    ordered: list[str] = []

    def add(name: str) -> None:
        if name not in ordered:
            ordered.append(name)

    for preferred in rules.edit_columns:
        if preferred.lower() in by_name:
            add(by_name[preferred.lower()].name)
    for col in dated:
        if col.on_update:
            add(col.name)
    for preferred in rules.entry_columns:
        if preferred.lower() in by_name:
            add(by_name[preferred.lower()].name)
    return ordered


def choose_watermark(conn: Any, table: TableInfo, rules: AnalysisRules, now: datetime) -> Watermark:
    """The first candidate the sample supports, else the auto-increment key, else none."""
    if not table.primary_key:
        return Watermark((), "no primary key: copied fully")
    candidates = candidate_columns(table, rules)
    samples = sample_columns(conn, table, candidates, rules, now)
    rejected: list[tuple[str, str]] = []
    for name in candidates:
        why_not = judge_sample(samples[name], rules)
        if why_not is None:
            sample = samples[name]
            how = "whole table" if sample.whole_table else f"newest {sample.sampled} rows"
            return Watermark((name,), f"{name}: {sample.real}/{sample.sampled} real values ({how})", tuple(rejected))
        rejected.append((name, why_not))
    key = table.auto_increment_key
    if key is not None:
        return Watermark((key,), f"no usable change column: auto-increment key {key} as watermark (append-only)",
                         tuple(rejected))
    return Watermark((), "no usable change column and no auto-increment key", tuple(rejected))


def row_width(table: TableInfo) -> int:
    """Bytes per row: the server's average when there are rows, else an estimate from the column types."""
    if table.table_rows > 0 and table.avg_row_length > 0:
        return table.avg_row_length
    return max(1, sum(_declared_width(c) for c in table.columns))


_WIDTHS = {
    "tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "bigint": 8, "float": 4, "double": 8,
    "date": 3, "time": 3, "datetime": 5, "timestamp": 4, "year": 1, "bit": 8, "enum": 2, "set": 8,
    "decimal": 8, "tinytext": 64, "text": 256, "mediumtext": 1024, "longtext": 1024,
    "tinyblob": 64, "blob": 256, "mediumblob": 1024, "longblob": 1024, "json": 256,
}


def _declared_width(col: ColumnInfo) -> int:
    if col.data_type in ("char", "varchar", "binary", "varbinary"):
        match = re.search(r"\((\d+)\)", col.column_type)
        # Variable-length text is rarely full: count half of the declared width.
        return max(1, int(match.group(1)) // 2) if match else 64
    return _WIDTHS.get(col.data_type, 16)


def choose_batch_size(table: TableInfo, rules: AnalysisRules) -> int:
    """Rows per chunk so that one chunk is about target_chunk_mb, rounded to two significant digits."""
    rows = int(rules.target_chunk_mb * MIB // row_width(table))
    rows = min(rules.max_batch_size, max(rules.min_batch_size, rows))
    magnitude = 10 ** max(0, len(str(rows)) - 2)
    return max(rules.min_batch_size, rows // magnitude * magnitude)


def choose_strategy(table: TableInfo, watermark: Watermark, rules: AnalysisRules) -> ExtractionStrategy:
    if not table.primary_key or not watermark.columns or table.table_rows <= rules.full_copy_max_rows:
        return ExtractionStrategy.full_table
    size_mb = table.data_length / MIB
    if table.table_rows >= rules.chunked_min_rows or size_mb >= rules.chunked_min_mb:
        return ExtractionStrategy.incremental_chunked
    if watermark.columns == (table.auto_increment_key,):
        # The watermark is the key itself (append-only log): key ranges follow the
        # watermark order, so splitting into ranges is always safe, and such logs
        # (securitylog) are the tables that grow without bound.
        return ExtractionStrategy.incremental_chunked
    return ExtractionStrategy.incremental


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class TableAnalysis:
    name: str
    config: TableConfig
    watermark: Watermark  # the best watermark, even when the table is small enough to copy fully
    error: str | None = None  # the table could not be sampled; it is copied fully

    @property
    def reason(self) -> str:
        if self.error:
            return self.error
        config = self.config
        if config.extraction_strategy is ExtractionStrategy.full_table and self.watermark.columns:
            return f"full copy: {config.estimated_rows} rows (tiny); watermark if it grows: {self.watermark.reason}"
        return self.watermark.reason


@dataclass(frozen=True)
class SchemaAnalysis:
    schema: SourceSchema
    tables: Mapping[str, TableAnalysis]
    # Source tables left out of tables.yml, with why: excluded, or a name tables.yml cannot hold.
    skipped: Mapping[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        return {name: t.error for name, t in self.tables.items() if t.error}

    def table_configs(self) -> dict[str, TableConfig]:
        return {name: t.config for name, t in self.tables.items()}

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, t in self.tables.items():
            rows.append({
                "table": name,
                "strategy": t.config.extraction_strategy.value,
                "watermark": ", ".join(t.config.incremental_columns) or "-",
                "tier": t.config.tier,
                "rows": t.config.estimated_rows,
                "batch_size": t.config.batch_size,
                "reason": t.reason,
            })
        return rows


def analyze_table(conn: Any, table: TableInfo, rules: AnalysisRules, now: datetime) -> TableAnalysis:
    """Choose the settings of one table. A failing sample query degrades that table to a full copy."""
    error = None
    observed = None
    try:
        watermark = choose_watermark(conn, table, rules, now)
        strategy = choose_strategy(table, watermark, rules)
        if strategy is not ExtractionStrategy.full_table:
            observed = probe_watermark(conn, table, watermark.columns[0], rules)
    except Exception as exc:  # noqa: BLE001 - recorded per table, the analysis goes on
        if _is_connection_error(exc):
            raise
        error = f"table {table.name!r}: sampling failed ({type(exc).__name__}: {exc}); copied fully"
        watermark = Watermark((), "sampling failed")
        strategy = ExtractionStrategy.full_table
    # A full copy uses no watermark: record none, so the file says what runs.
    incremental_columns = list(watermark.columns) if strategy is not ExtractionStrategy.full_table else []
    config = TableConfig(
        primary_key=list(table.primary_key),
        extraction_strategy=strategy,
        incremental_columns=incremental_columns,
        batch_size=choose_batch_size(table, rules),
        tier=rules.tier_of(table.name),
        estimated_rows=table.table_rows,
        estimated_size_mb=round(table.data_length / MIB, 3),
        observed_watermark=observed,
        columns=[c.name for c in table.columns],
        column_types={c.name: c.definition for c in table.columns},
    )
    return TableAnalysis(table.name, config, watermark, error)


def _is_connection_error(exc: BaseException) -> bool:
    from clinicflow.retry import is_transient

    return is_transient(exc)


def rejected_table_name(name: str) -> str | None:
    """Why tables.yml cannot hold a table of this name (invalid, reserved, too long), or None."""
    try:
        validate_table_name(name)
    except IdentifierError as exc:
        return str(exc)
    return reserved_name_error(name)


def skipped_tables(schema: SourceSchema, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Source tables the analysis leaves out of tables.yml, each with the reason."""
    excluded = {name.lower() for name in exclude}
    skipped = {}
    for name in schema.tables:
        if name.lower() in excluded:
            skipped[name] = "excluded"
        elif (reason := rejected_table_name(name)) is not None:
            skipped[name] = f"name not allowed in tables.yml: {reason}"
    return skipped


def analyze_schema_with(conn: Any, schema: SourceSchema, rules: AnalysisRules | None = None,
                        now: datetime | None = None, exclude: Iterable[str] = ()) -> SchemaAnalysis:
    rules = rules or AnalysisRules()
    now = now or datetime.now(timezone.utc)
    log = get_logger("clinicflow.schema_analysis")
    skipped = skipped_tables(schema, exclude)
    for name, reason in skipped.items():
        if reason != "excluded":
            log.warning("table %r skipped (not copied): %s", name, reason)
    results = {}
    for name, table in sorted(schema.tables.items()):
        if name in skipped:
            continue
        result = analyze_table(conn, table, rules, now)
        if result.error:
            log.error(result.error)
        results[name] = result
    return SchemaAnalysis(schema, results, skipped)


def analyze_source(server: MySQLServer, rules: AnalysisRules | None = None,
                   now: datetime | None = None, exclude: Iterable[str] = ()) -> SchemaAnalysis:
    """Read the schema of the block's database and choose every table's settings (``exclude``: names left out)."""
    conn = server.connect()
    try:
        schema = read_schema_with(conn, server.database, server.describe())
        if not schema.tables:
            raise AnalysisError(f"{server.describe()}: database has no tables (wrong database name?)")
        analysis = analyze_schema_with(conn, schema, rules, now, exclude)
        if not analysis.tables:
            raise AnalysisError(f"{server.describe()}: every table was skipped or excluded; nothing to write")
        return analysis
    finally:
        conn.close()


# --------------------------------------------------------------------------- rendering

GENERATED_AT_PREFIX = "# generated at: "
_OVERRIDES_START = re.compile(r"^overrides\s*:")
_TOP_LEVEL_KEY = re.compile(r"^[^\s#]")

OVERRIDES_HELP = """\
# Hand edits go under `overrides:` (settings there win over the generated ones), e.g.
#   overrides:
#     securitylog:
#       batch_size: 100000
#       reconcile_slices: 7
# Everything from the `overrides:` line to the end of the file is kept byte for byte on regeneration.
"""
DEFAULT_OVERRIDES_BLOCK = "overrides: {}\n"


def _scalar(value: Any) -> str:
    """One YAML scalar, quoted only when YAML needs it."""
    if isinstance(value, Enum):
        value = value.value
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True)
    for end in ("\n...\n", "\n"):
        if text.endswith(end):
            text = text[: -len(end)]
            break
    return text


def _flow_list(values: Iterable[Any]) -> str:
    return "[" + ", ".join(_scalar(v) for v in values) + "]"


def render_table(name: str, config: TableConfig) -> str:
    """One table entry, fields in the model's order, unset optional fields left out."""
    lines = [f"  {_scalar(name)}:"]
    data = config.model_dump(mode="json")
    for key in TableConfig.model_fields:
        value = data[key]
        if value is None:
            continue
        if key == "boolean_columns" and not value:
            continue
        if key.startswith("reconcile_") and value == TableConfig.model_fields[key].default:
            continue
        if isinstance(value, list):
            lines.append(f"    {key}: {_flow_list(value)}")
        elif isinstance(value, dict):
            if not value:
                lines.append(f"    {key}: {{}}")
                continue
            lines.append(f"    {key}:")
            lines.extend(f"      {_scalar(k)}: {_scalar(v)}" for k, v in value.items())
        else:
            lines.append(f"    {key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def render_body(analysis: SchemaAnalysis, overrides_block: str) -> str:
    """Everything after the generated-at line: deterministic for an unchanged source."""
    schema = analysis.schema
    parts = [
        f"# source: {schema.address}\n",
        f"# schema fingerprint: {schema.fingerprint()} ({len(schema.tables)} tables)\n",
        "# Settings under `tables:` are rewritten by every analysis; put hand edits under `overrides:`.\n",
        "version: 1\n",
        "tables:\n",
    ]
    parts.extend(render_table(name, analysis.tables[name].config) for name in sorted(analysis.tables))
    parts.append(OVERRIDES_HELP)
    parts.append(overrides_block)
    return "".join(parts)


HEADER_FIRST_LINE = "# tables.yml: generated by `clinicflow analyze-schema`.\n"


def extract_overrides_block(text: str) -> str | None:
    """The top-level ``overrides:`` section of an existing file, byte for byte (None if absent).

    It runs from the ``overrides:`` line to the next top-level key or the end
    of the file, so comments inside it stay too.
    """
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _OVERRIDES_START.match(line)), None)
    if start is None:
        return None
    end = next((j for j in range(start + 1, len(lines)) if _TOP_LEVEL_KEY.match(lines[j])), len(lines))
    block = "".join(lines[start:end])
    return block if block.endswith("\n") else block + "\n"


def _overrides_of(block: str, source: str) -> dict[str, Any]:
    try:
        data = yaml_load(block) or {}
    except yaml.YAMLError as exc:
        raise AnalysisError(f"{source}: field 'overrides': not valid YAML: {yaml_error_line(exc)}") from None
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise AnalysisError(f"{source}: field 'overrides': must be a mapping of table name to settings")
    return overrides


def render_tables_yml(analysis: SchemaAnalysis, previous_text: str | None = None, *,
                      generated_at: datetime | None = None, source: str = "tables.yml") -> str:
    """The complete tables.yml text.

    ``previous_text`` is the current file: its ``overrides:`` section is kept
    byte for byte, and when nothing else changed its text is returned as is
    (same generated-at line), so regenerating an unchanged source gives the
    same bytes.
    """
    block = extract_overrides_block(previous_text) if previous_text else None
    block = block or DEFAULT_OVERRIDES_BLOCK
    overrides = _overrides_of(block, source)
    gone = sorted(set(overrides) - set(analysis.tables))
    if gone:
        raise AnalysisError(
            f"{source}: overrides name tables that are no longer in the source: {', '.join(gone)}; "
            "remove them from `overrides:` and run the analysis again"
        )
    body = render_body(analysis, block)
    if previous_text is not None and _body_of(previous_text) == body:
        return previous_text
    stamp = (generated_at or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = HEADER_FIRST_LINE + f"{GENERATED_AT_PREFIX}{stamp} (changes only when the generated content changes)\n" + body
    # The output must load with the project's own model.
    try:
        parse_tables_config(yaml_load(text), source=source)
    except Exception as exc:  # ConfigError, YAMLError
        raise AnalysisError(f"generated {source} does not validate: {exc}") from None
    return text


def _body_of(text: str) -> str | None:
    """The part of a generated file after its generated-at line (None if it has no such header)."""
    if not text.startswith(HEADER_FIRST_LINE):
        return None
    rest = text[len(HEADER_FIRST_LINE):]
    if not rest.startswith(GENERATED_AT_PREFIX):
        return None
    newline = rest.find("\n")
    return rest[newline + 1:] if newline >= 0 else None


def tables_file_path(path: str | Path | None = None) -> Path:
    """The tables.yml to read or write: ``path``, else $CLINICFLOW_TABLES_FILE, else the project's."""
    import os

    from clinicflow.config import DEFAULT_TABLES_FILE

    return Path(path or os.environ.get("CLINICFLOW_TABLES_FILE") or DEFAULT_TABLES_FILE)


@dataclass(frozen=True)
class WriteResult:
    path: Path
    changed: bool
    tables: int
    errors: dict[str, str]


def write_tables_yml(analysis: SchemaAnalysis, path: str | Path, *, generated_at: datetime | None = None) -> WriteResult:
    """Render and write tables.yml at ``path`` (atomically); unchanged content leaves the file untouched."""
    target = Path(path)
    try:
        previous = target.read_text(encoding="utf-8") if target.exists() else None
    except UnicodeDecodeError:
        raise AnalysisError(f"{target}: the existing file is not UTF-8 text; move it away first") from None
    except IsADirectoryError:
        raise AnalysisError(f"{target}: is a directory, not a tables.yml file") from None
    text = render_tables_yml(analysis, previous, generated_at=generated_at, source=target.name)
    changed = text != previous
    if changed:
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    return WriteResult(target, changed, len(analysis.tables), analysis.errors)


# --------------------------------------------------------------------------- drift


class DriftKind(str, Enum):
    table_added = "table_added"
    table_dropped = "table_dropped"
    column_added = "column_added"
    column_dropped = "column_dropped"
    column_retyped = "column_retyped"
    primary_key_lost = "primary_key_lost"
    primary_key_changed = "primary_key_changed"
    watermark_missing = "watermark_missing"
    watermark_stalled = "watermark_stalled"
    boolean_column_invalid = "boolean_column_invalid"
    column_name_collision = "column_name_collision"


@dataclass(frozen=True)
class DriftItem:
    table: str
    kind: DriftKind
    column: str | None
    expected: str | None  # what tables.yml says
    actual: str | None  # what the source has
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "change": self.kind.value,
            "column": self.column,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }


@dataclass
class DriftReport:
    """Differences between tables.yml and the live source. Empty means no drift."""

    source: str
    tables_checked: int
    items: list[DriftItem] = field(default_factory=list)

    @property
    def has_drift(self) -> bool:
        return bool(self.items)

    def tables(self) -> list[str]:
        return sorted({item.table for item in self.items})

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per change, for a Prefect table artifact or a rich table."""
        return [item.to_dict() for item in self.items]

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "tables_checked": self.tables_checked,
                "has_drift": self.has_drift,
                "changes": self.to_rows(),
            },
            indent=2,
            sort_keys=False,
        )

    def summary(self) -> str:
        if not self.has_drift:
            return f"no drift: {self.tables_checked} tables in tables.yml match {self.source}"
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.kind.value] = counts.get(item.kind.value, 0) + 1
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        return f"drift in {len(self.tables())} table(s) against {self.source}: {detail}"


def compare_schema(schema: SourceSchema, config: TablesConfig,
                   probes: Mapping[str, str | None] | None = None, exclude: Iterable[str] = ()) -> DriftReport:
    """Compare tables.yml with a read schema. ``probes``: live watermark maxima per table (see check_drift)."""
    excluded = {name.lower() for name in exclude}
    report = DriftReport(source=schema.address, tables_checked=len(config.tables))
    items = report.items
    for name in sorted(set(schema.tables) - set(config.tables)):
        if name.lower() in excluded or rejected_table_name(name) is not None:
            continue  # left out on purpose, or a name tables.yml cannot hold (analyze-schema warns about it)
        info = schema.tables[name]
        items.append(DriftItem(name, DriftKind.table_added, None, None, f"{len(info.columns)} columns",
                               f"table {name!r} is in the source but not in tables.yml: it is not copied"))
    for name in sorted(config.tables):
        if name not in schema.tables:
            items.append(DriftItem(name, DriftKind.table_dropped, None, "present", None,
                                   f"table {name!r} is in tables.yml but no longer in the source"))
            continue
        items.extend(_compare_table(schema.tables[name], name, config, (probes or {}).get(name, _NO_PROBE)))
    items.sort(key=lambda item: (item.table, list(DriftKind).index(item.kind), item.column or ""))
    return report


_NO_PROBE = object()


def _compare_table(info: TableInfo, name: str, config: TablesConfig, probe: Any) -> list[DriftItem]:
    base = config.tables[name]
    effective = config.effective(name)
    items: list[DriftItem] = []
    live = {c.name.lower(): c for c in info.columns}

    watermarks = {c.lower() for c in effective.incremental_columns}
    recorded = list(base.columns or [])
    recorded_lower = {c.lower() for c in recorded}
    if base.columns is not None:
        for col in info.columns:
            if col.name.lower() not in recorded_lower:
                items.append(DriftItem(name, DriftKind.column_added, col.name, None, col.definition,
                                       f"{name}.{col.name} ({col.definition}) is new in the source"))
        for col_name in recorded:
            if col_name.lower() not in live:
                expected = (base.column_types or {}).get(col_name)
                impact = ": it is the incremental column, the table cannot be copied incrementally" \
                    if col_name.lower() in watermarks else ""
                items.append(DriftItem(name, DriftKind.column_dropped, col_name, expected, None,
                                       f"{name}.{col_name} is no longer in the source{impact}"))
    # A hand-written tables.yml may list no columns: still name a missing watermark column.
    for col_name in effective.incremental_columns:
        if col_name.lower() not in live and col_name.lower() not in recorded_lower:
            items.append(DriftItem(name, DriftKind.watermark_missing, col_name, "present", None,
                                   f"incremental column {name}.{col_name} is not in the source"))
    for col_name, expected in sorted((base.column_types or {}).items()):
        col = live.get(col_name.lower())
        if col is not None and col.definition != expected:
            items.append(DriftItem(name, DriftKind.column_retyped, col_name, expected, col.definition,
                                   f"{name}.{col_name} changed from {expected!r} to {col.definition!r}"))

    from clinicflow.pgload import pg_truncation_collisions

    for first, second in pg_truncation_collisions([c.name for c in info.columns]):
        items.append(DriftItem(name, DriftKind.column_name_collision, second, first, second,
                               f"{name}.{first} and {name}.{second} are one name in PostgreSQL (cut to 63 bytes): "
                               "the load fails until one is renamed"))
    for col_name in effective.boolean_columns:
        col = live.get(col_name.lower())
        if col is None:
            items.append(DriftItem(name, DriftKind.boolean_column_invalid, col_name, "tinyint(1)", None,
                                   f"boolean column {name}.{col_name} is not in the source"))
        elif not _is_tinyint1(col):
            items.append(DriftItem(name, DriftKind.boolean_column_invalid, col_name, "tinyint(1)", col.column_type,
                                   f"boolean column {name}.{col_name} is {col.column_type}, not tinyint(1)"))

    expected_pk = list(effective.primary_key)
    actual_pk = list(info.primary_key)
    if expected_pk and not actual_pk:
        items.append(DriftItem(name, DriftKind.primary_key_lost, None, ", ".join(expected_pk), None,
                               f"table {name!r} lost its primary key ({', '.join(expected_pk)})"))
    elif [c.lower() for c in expected_pk] != [c.lower() for c in actual_pk]:
        items.append(DriftItem(name, DriftKind.primary_key_changed, None, ", ".join(expected_pk) or None,
                               ", ".join(actual_pk) or None,
                               f"primary key of {name!r} is ({', '.join(actual_pk)}), tables.yml says "
                               f"({', '.join(expected_pk)})"))

    if probe is not _NO_PROBE and probe is not None and base.observed_watermark is not None:
        grown = info.table_rows > base.estimated_rows if info.exact_row_count else \
            info.table_rows > base.estimated_rows * 1.1 + 100
        if grown and str(probe) == base.observed_watermark:
            column = base.incremental_columns[0]
            added = info.table_rows - base.estimated_rows
            items.append(DriftItem(
                name, DriftKind.watermark_stalled, column, f"> {base.observed_watermark}", str(probe),
                f"{name}.{column} stopped moving: still {base.observed_watermark} while about {added} rows were "
                "added since the analysis; new rows may not be copied incrementally",
            ))
    return items


def _is_tinyint1(col: ColumnInfo) -> bool:
    # MySQL 8 prints tinyint without a width except tinyint(1); MariaDB always prints it.
    return col.data_type == "tinyint" and col.column_type.lower().split()[0] == "tinyint(1)"


def live_probes(conn: Any, schema: SourceSchema, config: TablesConfig,
                rules: AnalysisRules | None = None) -> dict[str, str | None]:
    """Current watermark maxima for tables whose tables.yml records an observed watermark."""
    rules = rules or AnalysisRules()
    probes: dict[str, str | None] = {}
    for name, table_config in sorted(config.tables.items()):
        info = schema.tables.get(name)
        if info is None or table_config.observed_watermark is None or not table_config.incremental_columns:
            continue
        column = info.column(table_config.incremental_columns[0])
        if column is None:
            continue
        try:
            probes[name] = probe_watermark(conn, info, column.name, rules)
        except Exception as exc:  # noqa: BLE001 - a failing probe skips only this check
            if _is_connection_error(exc):
                raise
            get_logger("clinicflow.schema_analysis").warning(
                "table %r: watermark probe failed (%s); stalled-watermark check skipped", name, type(exc).__name__)
    return probes


def check_drift(server: MySQLServer, config: TablesConfig, rules: AnalysisRules | None = None,
                exclude: Iterable[str] = ()) -> DriftReport:
    """Compare tables.yml with the live source: what the nightly flow runs first."""
    conn = server.connect()
    try:
        schema = read_schema_with(conn, server.database, server.describe())
        probes = live_probes(conn, schema, config, rules)
    finally:
        conn.close()
    return compare_schema(schema, config, probes, exclude)


def rules_with(rules: AnalysisRules | None = None, **changes: Any) -> AnalysisRules:
    """A copy of ``rules`` (default rules if None) with some fields changed; None values are ignored."""
    return dataclasses.replace(rules or AnalysisRules(), **{k: v for k, v in changes.items() if v is not None})
