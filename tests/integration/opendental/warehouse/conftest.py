"""Fixtures for the PostgreSQL load tests: a generated OpenDental source, an empty replica, an empty
analytics database, the env vars the resolver reads, and a tables.yml for the generator's tables."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql import catalog, sessions
from clinicflow.core.sql import quote_ident, quote_qualified
from clinicflow.opendental.tables.config import TableConfig, load_tables_config
from clinicflow.opendental.warehouse import load_plan
from clinicflow_dev import generator
from tests.conftest import mysql_exec  # noqa: F401 - used by the load tests through this module

# Tables in tier 1 (loaded first) and tables whose deletes are reconciled every night.
TIER1 = ("patient", "appointment", "procedurelog")
RECONCILED = ("patient", "procedurelog")
BATCH = 700  # small, so the demo tables are loaded in several chunks


def tables_yml(tables: dict[str, int], *, batch_size: int = BATCH) -> dict[str, Any]:
    """tables.yml for the generator's tables (name -> rows): tables of <= 1000 rows go in small-table groups."""
    out: dict[str, Any] = {}
    for name, rows in tables.items():
        if name == generator.EDGECASE_TABLE:
            pk, change = ["EdgeCaseNum"], "DateTStamp"
        else:
            spec = generator.table_spec(name)
            pk, change = spec.primary_key, spec.change_column
        entry: dict[str, Any] = {
            "primary_key": pk,
            "batch_size": batch_size,
            "tier": 1 if name in TIER1 else 3,
            "estimated_rows": rows,
        }
        if change and pk:
            entry.update(extraction_strategy="incremental", incremental_columns=[change])
        if name == generator.EDGECASE_TABLE:
            entry["boolean_columns"] = ["Flag"]
        if name in RECONCILED:
            entry["reconcile_deletes"] = True
        out[name] = entry
    return {"version": 1, "tables": out}


@dataclass
class EtlEnv:
    source: MySQLServer
    replica: MySQLServer
    pg: PostgresServer
    tables_file: Path
    counts: dict[str, int]

    def config(self, table: str) -> TableConfig:
        return load_tables_config(self.tables_file).effective(table)


def _set_env(monkeypatch: pytest.MonkeyPatch, block: str, server: Any) -> None:
    prefix = "CLINICFLOW_" + block.upper().replace("-", "_") + "_"
    monkeypatch.setenv(prefix + "HOST", server.host)
    monkeypatch.setenv(prefix + "PORT", str(server.port))
    monkeypatch.setenv(prefix + "USER", server.username)
    monkeypatch.setenv(prefix + "DATABASE", server.database)


@pytest.fixture
def etl_env(
    make_mysql_db: Callable[[str], MySQLServer],
    make_pg_db: Callable[[str], PostgresServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> EtlEnv:
    """Seeded source (demo size + edge cases), empty replica and analytics databases, env-mode blocks."""
    source, replica, pg = make_mysql_db("lsrc"), make_mysql_db("lrep"), make_pg_db("lpg")
    counts = generator.seed(source)
    path = tmp_path / "tables.yml"
    path.write_text(yaml.safe_dump(tables_yml(counts)), encoding="utf-8")
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    _set_env(monkeypatch, "opendental-source", source)
    _set_env(monkeypatch, "opendental-replication", replica)
    _set_env(monkeypatch, "analytics-postgres", pg)
    monkeypatch.setenv("CLINICFLOW_TABLES_FILE", str(path))
    return EtlEnv(source, replica, pg, path, counts)


def pg_query(server: PostgresServer, sql: str, params: Any = None) -> list[tuple]:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def pg_exec(server: PostgresServer, *statements: str) -> None:
    """Run statements that return nothing and commit them."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.commit()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Row-by-row comparison of a table under the documented mapping (Python side)


def _parse_time(text: str) -> dt.timedelta:
    negative = text.startswith("-")
    hours, minutes, seconds = text.lstrip("-").split(":")
    value = dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds))
    return -value if negative else value


def _zero(text: str) -> bool:
    return text[5:7] == "00" or text[8:10] == "00"


def expected_value(col: Any, raw: bytes | None) -> Any:
    """What raw.<table> must hold for one source value (bytes as MySQL stores them), by docs/loading.md."""
    from clinicflow.opendental.tables.typemap import Kind

    if raw is None:
        return None
    kind = col.kind
    text = raw.decode("utf-8", "surrogateescape") if kind is not Kind.binary else ""
    if kind is Kind.integer:
        return int(text)
    if kind is Kind.decimal:
        return decimal.Decimal(text)
    if kind in (Kind.double, Kind.float):
        return float(text)
    if kind is Kind.boolean_int:
        return {"0": False, "1": True}[text]
    if kind is Kind.bit1:
        return text == "1"
    if kind is Kind.bits:
        return format(int(text), f"0{col.bit_length}b")
    if kind is Kind.date:
        return None if _zero(text) else dt.date.fromisoformat(text)
    if kind is Kind.datetime:
        return None if _zero(text) else dt.datetime.fromisoformat(text)
    if kind is Kind.instant:  # read in a UTC session
        return None if _zero(text) else dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    if kind is Kind.time:
        return _parse_time(text)
    if kind is Kind.text:
        return text.replace("\x00", "")
    if kind is Kind.binary:
        return bytes(raw)
    if kind is Kind.json:
        return json_value(text)
    raise AssertionError(kind)


def json_value(text: str) -> Any:
    """A JSON document parsed with exact numbers (jsonb keeps numbers as numeric: 1.5e300 as its digits)."""
    return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)


def _float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _source_select(col: Any) -> str:
    from clinicflow.opendental.tables.typemap import Kind

    q = quote_ident(col.name, "mysql")
    if col.kind in (Kind.bit1, Kind.bits):
        return f"CAST({q} + 0 AS CHAR)"
    if col.kind is Kind.float:
        return f"CAST({q} AS DOUBLE)"
    if col.kind is Kind.integer and col.source.data_type == "year":
        return f"{q} + 0"
    return col.carried_sql(q)


def compare_rows(replica: MySQLServer, pg: PostgresServer, table: str, config: TableConfig) -> int:
    """Assert raw.<table> equals the replica row by row under the mapping; return the row count."""
    conn = sessions.raw_connection(replica)
    try:
        plan = load_plan.plan_load(catalog.read_table(conn, table), config)
        order = ", ".join(quote_ident(k, "mysql") for k in plan.primary_key)
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT {', '.join(_source_select(c) for c in plan.columns)} FROM "
                f"{quote_ident(table, 'mysql')} ORDER BY {order}"
            )
            source_rows = cur.fetchall()
    finally:
        conn.close()
    pg_order = ", ".join(quote_ident(k, "postgres") for k in plan.primary_key)
    pg_columns = [quote_ident(c.name, "postgres") + ("::text" if c.kind.value == "json" else "") for c in plan.columns]
    raw_rows = pg_query(
        pg, f"SELECT {', '.join(pg_columns)} FROM {quote_qualified('raw', table, 'postgres')} ORDER BY {pg_order}"
    )
    assert len(raw_rows) == len(source_rows), f"{table}: {len(raw_rows)} rows in raw, {len(source_rows)} in the replica"
    for src, raw in zip(source_rows, raw_rows, strict=True):
        for col, s, r in zip(plan.columns, src, raw, strict=True):
            raw_bytes = s.encode() if isinstance(s, str) else s
            want = expected_value(col, raw_bytes)
            got = bytes(r) if isinstance(r, memoryview) else r
            if isinstance(got, decimal.Decimal) and isinstance(want, int):
                got = int(got)
            if col.kind.value == "json" and got is not None:
                got = json_value(got)
            if col.kind.value == "float" and got is not None:
                # psycopg2 reads real through its shortest text: compare as the float32 both hold.
                got, want = _float32(got), _float32(want)
            assert got == want, f"{table} key {src[0]!r} column {col.name}: raw {got!r}, expected {want!r}"
    return len(raw_rows)
