"""Catalog signals: the tables the nightly can leave alone, as neither server wrote them since the last good night.

One query per MariaDB server reads every table's engine, create/update time,
row estimate, live checksum and a checksum of its column definitions from
``information_schema`` (TABLES and COLUMNS once each, not per table). A
table's signal is trusted only when its ``UPDATE_TIME`` is strictly older than
the second the catalog was read: any later write then moves ``UPDATE_TIME``
(one-second resolution), so an equal signal means no insert, update or delete
happened, silent or backdated. A table whose time is unknown (``NULL``, e.g.
InnoDB after a restart) or in the reading's own second gets no signal and runs
its full per-table work, reconciliation included.

The source's signals are read before the night's work, the replica's after it
(only the nightly writes the replica). They are stored in PostgreSQL per table
after a table's night ended well; next night a table whose source and replica
signals, tables.yml entry and raw table are all as stored is "unchanged"
without a per-table query, but only once its checksum sweep is whole: a
table checksummed in slices (one a night) is visited until every slice has
been compared on nights with no source write in between, so a silent update
made before a quiet spell is still found (the slices compared are stored with
the signals, and a changed source signal starts the count again).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.core.dbapi import Connection, PgConnection
from clinicflow.core.sql import quote_ident
from clinicflow.opendental.metrics import TableOutcome
from clinicflow.opendental.tables.config import TableConfig

SIGNALS_TABLE = "catalog_signals"
# Bumped when what a stored signal promises changes, so old rows never match.
_VERSION = "1"

_TABLES_SQL = (
    "SELECT TABLE_NAME, ENGINE, UNIX_TIMESTAMP(CREATE_TIME), UNIX_TIMESTAMP(UPDATE_TIME), TABLE_ROWS, "
    "DATA_LENGTH, CHECKSUM, UNIX_TIMESTAMP() FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'"
)
_COLUMNS_SQL = (
    "SELECT TABLE_NAME, MD5(GROUP_CONCAT(CONCAT_WS(0x1f, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, "
    "IFNULL(COLUMN_DEFAULT, 0x1e), IFNULL(COLLATION_NAME, ''), COLUMN_KEY, EXTRA) "
    "ORDER BY ORDINAL_POSITION SEPARATOR 0x1d)) FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = DATABASE() GROUP BY TABLE_NAME"
)


def read_signals(mysql_conn: Connection) -> dict[str, str | None]:
    """Every table's catalog signal in the connection's database (None: not trustworthy tonight)."""
    with mysql_conn.cursor() as cur:
        cur.execute("SET SESSION group_concat_max_len = 16777216")
        cur.execute(_COLUMNS_SQL)
        definitions = {str(name): str(digest) for name, digest in cur.fetchall()}
        cur.execute(_TABLES_SQL)
        rows = cur.fetchall()
    signals: dict[str, str | None] = {}
    for name, engine, created, updated, rows_estimate, data_length, checksum, now in rows:
        name = str(name)
        if updated is None or now is None or int(updated) >= int(now) or name not in definitions:
            signals[name] = None
            continue
        # InnoDB's row estimate moves with its statistics, not with the data: left out.
        estimate = None if str(engine).lower() == "innodb" else rows_estimate
        signals[name] = "|".join(
            str(v) for v in (engine, created, updated, estimate, data_length, checksum, definitions[name])
        )
    return signals


def config_signal(config: TableConfig, options: Iterable[Any] = ()) -> str:
    """A digest of a table's tables.yml entry and the load options that shape its copy."""
    text = json.dumps([_VERSION, config.model_dump(mode="json"), [str(o) for o in options]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_table(pg_conn: PgConnection, schema: str) -> None:
    q = quote_ident(schema, "postgres")
    with pg_conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.{SIGNALS_TABLE} (table_name text PRIMARY KEY, "
            "source text NOT NULL, replica text NOT NULL, raw text NOT NULL, config text NOT NULL, "
            "recorded_at timestamptz NOT NULL DEFAULT now())"
        )
        # The checksum slices compared since the source last changed ("7:0,1,4"); NULL: none known yet.
        cur.execute(f"ALTER TABLE {q}.{SIGNALS_TABLE} ADD COLUMN IF NOT EXISTS swept_slices text")
    pg_conn.commit()


_SLICE = re.compile(r"checksums slice (\d+)/(\d+)")
SWEEP_OFF = "whole"  # a full copy, or no row checksums configured: nothing further a visit would compare


def slices_checked(swept: str | None) -> tuple[int, frozenset[int]]:
    """(slices, the slice indexes compared) from an outcome's ``swept`` note ("replica keys+checksums slice 3/7
    (...)"): ``(1, {0})`` for a whole-table checksum, ``(0, {})`` when no checksums were compared."""
    if not swept or "checksums" not in swept:
        return 0, frozenset()
    found = _SLICE.findall(swept)
    if not found:
        return 1, frozenset({0})
    slices = {int(n) for _, n in found}
    if len(slices) != 1:
        return max(slices), frozenset()  # legs swept differently: no slice counts as compared by both
    return slices.pop(), frozenset(int(i) - 1 for i, _ in found)


def merge_coverage(stored: str | None, same_source: bool, swept: str | None, full_copy: bool = False) -> str:
    """The slices compared since the source last changed, after tonight's visit (see :func:`sweep_complete`).

    A full copy read every row tonight: whole. A visit that compared no checksums (the table's tables.yml turns
    them off) promises nothing more for a next visit to add: whole as well."""
    slices, tonight = slices_checked(swept)
    if full_copy or slices == 0:
        return SWEEP_OFF
    before: frozenset[int] = frozenset()
    if same_source and stored and ":" in stored:
        count, _, listed = stored.partition(":")
        if count == str(slices):
            before = frozenset(int(i) for i in listed.split(",") if i)
    return f"{slices}:{','.join(str(i) for i in sorted(before | tonight))}"


def sweep_complete(coverage: str | None) -> bool:
    """Every slice compared since the source's last write (or checksums are off for the table)."""
    if coverage == SWEEP_OFF:
        return True
    if not coverage or ":" not in coverage:
        return False
    count, _, listed = coverage.partition(":")
    return int(count) > 0 and len({i for i in listed.split(",") if i}) >= int(count)


def raw_signals(pg_conn: PgConnection, raw_schema: str) -> dict[str, str]:
    """Every raw table's file node and write counters (one catalog query): a write to raw moves them."""
    with pg_conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, c.relfilenode, s.n_tup_ins, s.n_tup_upd, s.n_tup_del FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (raw_schema,),
        )
        rows = cur.fetchall()
    pg_conn.commit()
    return {str(row[0]): "|".join(str(v) for v in row[1:]) for row in rows}


def unchanged_tables(
    pg_conn: PgConnection,
    schema: str,
    raw_schema: str,
    source: Mapping[str, str | None],
    replica: Mapping[str, str | None],
    configs: Mapping[str, str],
) -> set[str]:
    """Tables whose source, replica and raw signals and config digest all equal the stored ones."""
    ensure_table(pg_conn, schema)
    with pg_conn.cursor() as cur:
        cur.execute(
            f"SELECT table_name, source, replica, raw, config, swept_slices "
            f"FROM {quote_ident(schema, 'postgres')}.{SIGNALS_TABLE}"
        )
        rows = cur.fetchall()
    stored = {row[0]: tuple(row[1:5]) for row in rows if sweep_complete(row[5])}
    raw = raw_signals(pg_conn, raw_schema)
    same = set()
    for table, digest in configs.items():
        src, rep, raw_now = source.get(table), replica.get(table), raw.get(table)
        if (
            src is not None
            and rep is not None
            and raw_now is not None
            and stored.get(table) == (src, rep, raw_now, digest)
        ):
            same.add(table)
    return same


def unchanged_outcome(table: str) -> TableOutcome:
    """The night's record of a table the catalog showed unchanged on both servers."""
    # Signals are stored only after a verified night, and neither side was written since: that verification stands.
    return TableOutcome(
        table,
        status="unchanged",
        mode="unchanged",
        verification="ok",
        swept="nothing: catalog unchanged on source and replica since the last verified night",
    )


def ended_well(outcome: TableOutcome) -> bool:
    """A night that leaves the table's replica and raw copy complete and verified."""
    return not outcome.failed and outcome.verification == "ok"


def record(
    pg_conn: PgConnection,
    schema: str,
    raw_schema: str,
    source: Mapping[str, str | None],
    replica: Mapping[str, str | None],
    configs: Mapping[str, str],
    outcomes: Iterable[TableOutcome],
) -> int:
    """Store tonight's signals of the tables that ended well; forget those of the others. Returns rows stored."""
    raw = raw_signals(pg_conn, raw_schema)
    ensure_table(pg_conn, schema)
    with pg_conn.cursor() as cur:
        cur.execute(f"SELECT table_name, source, swept_slices FROM {quote_ident(schema, 'postgres')}.{SIGNALS_TABLE}")
        before = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
    keep, forget = [], []
    for outcome in outcomes:
        table = outcome.table
        src, rep, raw_now, digest = source.get(table), replica.get(table), raw.get(table), configs.get(table)
        if outcome.status == "unchanged":
            continue  # not visited tonight: its stored row stands as it is
        if ended_well(outcome) and src is not None and rep is not None and raw_now is not None and digest is not None:
            stored_source, stored_coverage = before.get(table, (None, None))
            coverage = merge_coverage(stored_coverage, stored_source == src, outcome.swept, outcome.mode == "full")
            keep.append((table, src, rep, raw_now, digest, coverage))
        else:
            forget.append((outcome.table,))
    q = f"{quote_ident(schema, 'postgres')}.{SIGNALS_TABLE}"
    from psycopg2.extras import execute_values

    with pg_conn.cursor() as cur:
        if forget:
            cur.execute(f"DELETE FROM {q} WHERE table_name = ANY(%s)", ([t for (t,) in forget],))
        if keep:
            execute_values(
                cur,
                f"INSERT INTO {q} (table_name, source, replica, raw, config, swept_slices) VALUES %s "
                "ON CONFLICT (table_name) DO UPDATE SET source = EXCLUDED.source, "
                "replica = EXCLUDED.replica, raw = EXCLUDED.raw, config = EXCLUDED.config, "
                "swept_slices = EXCLUDED.swept_slices, recorded_at = now()",
                list({row[0]: row for row in keep}.values()),
                page_size=500,
            )
    pg_conn.commit()
    return len(keep)


class NightSignals:
    """One night's catalog signals: read before the tables run, stored after they ran."""

    def __init__(
        self, source: Any, replica: Any, pg: Any, configs: Mapping[str, TableConfig], state_schema: str, raw_schema: str
    ) -> None:
        self.replica, self.pg, self.state_schema, self.raw_schema = replica, pg, state_schema, raw_schema
        self.configs = {t: config_signal(c, (raw_schema, state_schema)) for t, c in configs.items()}
        self.source = _read(source)
        with connected(pg) as pg_conn:
            self.unchanged = unchanged_tables(
                pg_conn, state_schema, raw_schema, self.source, _read(replica), self.configs
            )

    def record(self, outcomes: Iterable[TableOutcome]) -> int:
        """Store the signals of the tables that ended well (replica and raw read now, after the night's writes)."""
        replica = _read(self.replica)
        with connected(self.pg) as pg_conn:
            return record(pg_conn, self.state_schema, self.raw_schema, self.source, replica, self.configs, outcomes)


def _read(server: Any) -> dict[str, str | None]:
    with connected(server) as conn:
        return read_signals(conn)
