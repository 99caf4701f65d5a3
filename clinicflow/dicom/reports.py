"""The reports source: a query on PostgreSQL, read in keyset pages of whole files.

The reports query (SQL text, or the name of a view/table) must yield the key
columns ``study_id``, ``series_id``, ``instance_id``, ``file_location``; every
other column is a report field. One row per file × report is normal.

Pages are keyset pages over the file key in a stable order: each page takes
the next ``page_size`` distinct file keys after the last key of the previous
page, and then *all* rows of those files — so a page never splits a file, no
file is read twice and none is skipped, whatever the table's physical order
(the system this replaces used OFFSET over ``ORDER BY RANDOM()``). Memory is
bounded by one page.

Rows are grouped by file key; each report field becomes the distinct,
non-empty values of that field, sorted, joined by :data:`FIELD_SEPARATOR`.

The query is the operator's SQL, so it runs in a read-only transaction and
must be one statement (a ``;`` outside quotes and comments is refused: the
query is wrapped as a subquery, and ``x) AS r; DROP ...`` would break out).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.protocols import PostgresServerLike
from clinicflow.core.dbapi import column_names
from clinicflow.core.errors import ClinicflowError, one_line
from clinicflow.core.sql import quote_ident, quote_list, quote_qualified

KEY_COLUMNS: tuple[str, ...] = ("study_id", "series_id", "instance_id", "file_location")
FIELD_SEPARATOR = "\n---\n"

# Columns the flow adds to each CSV row, before the report fields.
OUTPUT_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "dicom_object",
    "jpg_objects",
    "jpg_count",
    "frames",
    "rows",
    "columns",
    "photometric",
    "transfer_syntax",
    "sop_instance_uid",
)

_RELATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")


class ReportsQueryError(ClinicflowError, ValueError):
    """The reports query is unusable (missing key columns, clashing names, bad SQL)."""


@dataclass(frozen=True, order=True)
class FileKey:
    """A file's identity. Never the SOP Instance UID alone: archives hold distinct files sharing one."""

    study_id: str
    series_id: str
    instance_id: str
    file_location: str

    def as_tuple(self) -> tuple[str, str, str, str]:
        return (self.study_id, self.series_id, self.instance_id, self.file_location)

    def digest(self) -> str:
        """A short stable hash of the whole key (keeps object names distinct and deterministic)."""
        joined = "\x1f".join(self.as_tuple()).encode("utf-8")
        return hashlib.sha256(joined).hexdigest()[:16]

    def label(self) -> str:
        """Printable key for logs and artifacts: ids and location (no user info or query string), no report text."""
        from clinicflow.connectors.http import redact

        return f"{self.study_id}/{self.series_id}/{self.instance_id} @ {redact(self.file_location)}"


@dataclass
class FileGroup:
    """One file and its aggregated report fields."""

    key: FileKey
    fields: dict[str, str] = field(default_factory=dict)
    report_rows: int = 0


@dataclass
class Page:
    files: list[FileGroup]
    last_key: tuple[Any, ...] | None  # source-typed key of the last file, for the next page
    rows: int


@dataclass(frozen=True)
class SourceCount:
    rows: int
    files: int
    rows_without_key: int


@dataclass(frozen=True)
class ReportsSource:
    """Where the reports come from: ``query`` is SQL text or a (schema-qualified) view/table name.

    ``low`` / ``high`` (source-typed file keys) restrict it to the files with ``low <= key < high``
    (None: unbounded), in the order pages use: one range of a fanned-out run.
    """

    server: PostgresServerLike
    query: str
    low: tuple[Any, ...] | None = None
    high: tuple[Any, ...] | None = None

    def relation(self) -> str:
        text = self.query.strip().rstrip(";").strip()
        if not text:
            raise ReportsQueryError("the reports query is empty: give SQL text or a view name")
        if _RELATION_NAME.match(text):
            if "." in text:
                schema, name = text.split(".", 1)
                return quote_qualified(schema, name, "postgres")
            return quote_ident(text, "postgres")
        if not re.match(r"^(select|with|values|table)\b", text, re.IGNORECASE):
            raise ReportsQueryError("the reports query must be a SELECT/WITH statement or a view name")
        check_single_statement(text)
        # Every query runs with a parameter list (see _query): a literal "%" ("LIKE 'A00%'") is written "%%".
        return "(" + text.replace("%", "%%") + ")"

    @contextlib.contextmanager
    def _query(self, sql: str, params: Sequence[Any] | None, what: str) -> Iterator[Any]:
        """A cursor on ``sql``, executed; a failing query becomes a ReportsQueryError saying ``what`` failed."""
        with connected(self.server) as conn:
            conn.set_session(readonly=True)  # the query is only ever read: a data-modifying CTE fails
            with conn.cursor() as cur:
                try:
                    cur.execute(sql, list(params or []))  # always a list: "%%" in the query is one "%"
                except Exception as exc:  # noqa: BLE001 - driver errors and parameter mismatches alike name the query
                    raise ReportsQueryError(f"{what} failed: {_pg_message(exc)}") from None
                yield cur

    def columns(self) -> list[str]:
        """The query's columns, checked: key columns present, no clash with output columns."""
        with self._query(f"SELECT * FROM {self.relation()} AS reports LIMIT 0", None, "the reports query") as cur:
            names = column_names(cur)
        missing = [c for c in KEY_COLUMNS if c not in names]
        if missing:
            raise ReportsQueryError(
                f"the reports query lacks key column(s) {', '.join(missing)} (it has: {', '.join(names)})"
            )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ReportsQueryError(f"the reports query has duplicate column name(s) {', '.join(duplicates)}")
        clashing = [n for n in names if n in OUTPUT_COLUMNS and n not in KEY_COLUMNS]
        if clashing:
            raise ReportsQueryError(
                f"report field(s) {', '.join(clashing)} clash with output column names; rename them in the query"
            )
        return names

    def report_fields(self) -> list[str]:
        return [c for c in self.columns() if c not in KEY_COLUMNS]

    def _not_null(self, alias: str) -> str:
        """Every key column given: not NULL and not blank (an empty instance_id was taken for a file)."""
        columns = [f"{alias}.{quote_ident(c, 'postgres')}" for c in KEY_COLUMNS]
        return " AND ".join(f"{c} IS NOT NULL AND btrim({c}::text) <> ''" for c in columns)

    def _in_range(self) -> tuple[str, list[Any]]:
        """`` AND`` conditions restricting the file key to [low, high), and their parameters."""
        keys = quote_list(list(KEY_COLUMNS), "postgres")
        sql, params = "", []
        for bound, op in ((self.low, ">="), (self.high, "<")):
            if bound is not None:
                if len(bound) != len(KEY_COLUMNS):
                    raise ValueError(f"a key range bound has {len(KEY_COLUMNS)} values, got {len(bound)}")
                sql += f" AND ({keys}) {op} (%s, %s, %s, %s)"
                params += list(bound)
        return sql, params

    def keys_at_ranks(self, ranks: list[int]) -> list[tuple[Any, ...]]:
        """The source-typed keys of the files at 1-based ``ranks`` in page order (range boundaries)."""
        if not ranks:
            return []
        keys = quote_list(list(KEY_COLUMNS), "postgres")
        in_range, params = self._in_range()
        sql = (
            f"SELECT {keys} FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS rank_ "
            f"FROM (SELECT DISTINCT {keys} FROM {self.relation()} AS r WHERE {self._not_null('r')}{in_range}) "
            f"AS d) AS n WHERE rank_ = ANY(%s) ORDER BY rank_"
        )
        with self._query(sql, [*params, list(ranks)], "sampling the file keys") as cur:
            return [tuple(row) for row in cur.fetchall()]

    def count(self) -> SourceCount:
        keys = quote_list(list(KEY_COLUMNS), "postgres")
        null_key = " OR ".join(
            f"r.{quote_ident(c, 'postgres')} IS NULL OR btrim(r.{quote_ident(c, 'postgres')}::text) = ''"
            for c in KEY_COLUMNS
        )
        in_range, params = self._in_range()
        sql = (
            f"SELECT count(*), count(DISTINCT ({keys})) FILTER (WHERE NOT ({null_key})), "
            f"count(*) FILTER (WHERE {null_key}) FROM {self.relation()} AS r"
            + (f" WHERE TRUE{in_range}" if in_range else "")
        )
        with self._query(sql, params or None, "counting the reports") as cur:
            rows, files, without_key = cur.fetchone()
        return SourceCount(rows=int(rows), files=int(files), rows_without_key=int(without_key))

    def page_sql(self, first: bool) -> str:
        relation = self.relation()
        keys = quote_list(list(KEY_COLUMNS), "postgres")
        after = self._in_range()[0] + ("" if first else f" AND ({keys}) > (%s, %s, %s, %s)")
        join = " AND ".join(f"r.{quote_ident(c, 'postgres')} = k.{quote_ident(c, 'postgres')}" for c in KEY_COLUMNS)
        order = ", ".join(f"r.{quote_ident(c, 'postgres')}" for c in KEY_COLUMNS)
        return (
            f"WITH k AS (SELECT DISTINCT {keys} FROM {relation} AS r WHERE {self._not_null('r')}{after} "
            f"ORDER BY {keys} LIMIT %s) "
            f"SELECT r.* FROM {relation} AS r JOIN k ON {join} ORDER BY {order}"
        )

    def read_page(self, after: tuple[Any, ...] | None, page_size: int) -> Page:
        """The next ``page_size`` files after key ``after`` (None: from the start), all their rows."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        params: list[Any] = self._in_range()[1] + ([] if after is None else list(after)) + [page_size]
        with self._query(self.page_sql(after is None), params, "reading a reports page") as cur:
            return group_rows(column_names(cur), iter(cur))

    def pages(self, page_size: int) -> Iterator[Page]:
        after: tuple[Any, ...] | None = None
        while True:
            page = self.read_page(after, page_size)
            if not page.files:
                return
            yield page
            after = page.last_key


# Comments, E'' strings (backslash escapes), '' strings, "" identifiers, $tag$ quotes, and ; ( ).
# A quote none of the string patterns could close is unterminated.
_SQL_TOKENS = re.compile(
    r"""--[^\n]*|/\*|(?<![A-Za-z0-9_$])[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'"""
    r"""|"(?:[^"]|"")*"|\$([A-Za-z_][A-Za-z0-9_]*)?\$|[;()'"]""",
    re.DOTALL,
)


def check_single_statement(sql: str) -> None:
    """Refuse ``sql`` unless it is one statement with balanced parentheses (quotes and comments skipped).

    A trailing ``;`` must already be stripped.
    """
    depth = 0
    position = 0
    while True:
        match = _SQL_TOKENS.search(sql, position)
        if match is None:
            break
        token = match.group(0)
        position = match.end()
        if token == "/*":  # block comments nest in PostgreSQL
            nesting = 1
            while nesting and position < len(sql):
                if sql.startswith("/*", position):
                    nesting, position = nesting + 1, position + 2
                elif sql.startswith("*/", position):
                    nesting, position = nesting - 1, position + 2
                else:
                    position += 1
            if nesting:
                raise ReportsQueryError("the reports query has an unterminated /* comment")
        elif token.startswith("$"):
            end = sql.find(token, position)
            if end < 0:
                raise ReportsQueryError("the reports query has an unterminated dollar-quoted string")
            position = end + len(token)
        elif token in ("'", '"'):
            raise ReportsQueryError("the reports query has an unterminated quoted string")
        elif token == ";":
            raise ReportsQueryError("the reports query must be a single statement (it contains ';')")
        elif token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
            if depth < 0:
                raise ReportsQueryError("the reports query has an unbalanced ')'")
    if depth:
        raise ReportsQueryError("the reports query has an unbalanced '('")


def group_rows(names: list[str], rows: Iterator[tuple[Any, ...]]) -> Page:
    """Group ordered rows into files; aggregate report fields per file."""
    key_index = [names.index(c) for c in KEY_COLUMNS]
    field_index = [(i, n) for i, n in enumerate(names) if n not in KEY_COLUMNS]
    names_of_fields = [name for _, name in field_index]
    files: list[FileGroup] = []
    reports: set[tuple[str, ...]] = set()
    current_raw: tuple[Any, ...] | None = None
    count = 0
    for row in rows:
        count += 1
        raw_key = tuple(row[i] for i in key_index)
        if raw_key != current_raw:
            if files:
                files[-1].fields = _joined(names_of_fields, reports)
            files.append(FileGroup(key=FileKey(*(_text(v) for v in raw_key))))
            reports = set()
            current_raw = raw_key
        files[-1].report_rows += 1
        reports.add(tuple(_text(row[i]) for i, _ in field_index))
    if files:
        files[-1].fields = _joined(names_of_fields, reports)
    return Page(files=files, last_key=current_raw, rows=count)


def _joined(names: list[str], reports: set[tuple[str, ...]]) -> dict[str, str]:
    """A file's report fields: its distinct reports sorted, each field one value per report in that same order
    (a PRELIM and a FINAL report: the first date, status and reader are the first report's), joined by
    FIELD_SEPARATOR; a field every report gives the same value is that value once."""
    ordered = sorted(reports)
    fields = {}
    for position, name in enumerate(names):
        values = [report[position] for report in ordered]
        fields[name] = values[0] if len(set(values)) == 1 else FIELD_SEPARATOR.join(values)
    return fields


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _pg_message(exc: BaseException) -> str:
    """The server's message for a failed statement: first line only (never the connection string)."""
    return one_line(exc, limit=10_000, with_type=False)


def batches(files: list[FileGroup], batch_size: int) -> Iterator[list[FileGroup]]:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    for start in range(0, len(files), batch_size):
        yield files[start : start + batch_size]
