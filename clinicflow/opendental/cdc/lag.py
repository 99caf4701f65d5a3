"""CDC lag per source for ``clinicflow status`` and ``clinicflow cdc status``: seconds and binlog events behind."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.mysql.sessions import catalog_text, raw_connected
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.opendental.cdc import state
from clinicflow.opendental.cdc.checks import BinlogPosition, binlog_files, master_position

# Counting stops here: "at least this many events behind" is already the news.
MAX_COUNTED_EVENTS = 100_000


@dataclass(frozen=True)
class CdcLag:
    source: str
    status: str
    position: str
    events_behind: int | None  # None: the source could not be read
    seconds_behind: float | None
    failed_tables: dict[str, str]
    message: str | None

    def row(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "status": self.status,
            "position": self.position,
            "events behind": "" if self.events_behind is None else str(self.events_behind),
            "seconds behind": "" if self.seconds_behind is None else f"{self.seconds_behind:.0f}",
            "failed tables": ", ".join(self.failed_tables),
            "message": self.message or "",
        }


def events_between(src_conn: Connection, start: BinlogPosition, end: BinlogPosition) -> int:
    """Binlog events from ``start`` up to ``end`` (SHOW BINLOG EVENTS; capped at :data:`MAX_COUNTED_EVENTS`)."""
    if start.key() >= end.key():
        return 0
    count = 0
    files = [f for f in binlog_files(src_conn) if start.key()[0] <= BinlogPosition(f, 0).key()[0] <= end.key()[0]]
    with src_conn.cursor() as cur:
        for name in files:
            offset = start.pos if name == start.file else 4
            cur.execute(f"SHOW BINLOG EVENTS IN %s FROM {int(offset)} LIMIT {MAX_COUNTED_EVENTS - count}", (name,))
            for row in cur.fetchall():
                if name == end.file and int(catalog_text(row[1]) or 0) >= end.pos:
                    break
                if catalog_text(row[2]) not in ("Format_desc", "Rotate", "Gtid_list", "Binlog_checkpoint"):
                    count += 1
            if count >= MAX_COUNTED_EVENTS:
                break
    return count


def cdc_lag(replica: MySQLServerLike, src: MySQLServerLike | None) -> list[CdcLag]:
    """Every CDC recorded in ``replica``; with ``src`` also how far each is behind (empty: CDC never ran here)."""
    with raw_connected(replica) as conn:
        statuses = state.read_statuses(conn)
    out = []
    for s in statuses:
        behind: int | None = None
        seconds: float | None = None
        if src is not None and s.position is not None and state.source_id(src) == s.source:
            try:
                with raw_connected(src) as src_conn:
                    behind = events_between(src_conn, s.position, master_position(src_conn))
            except Exception:  # noqa: BLE001 - status shows what it can; lag stays blank
                behind = None
            if behind == 0:
                seconds = 0.0
            elif behind is not None and s.applied_at is not None:
                seconds = max(0.0, time.time() - s.applied_at)
        failed = {t: reason or "" for t, (status, reason) in s.tables.items() if status == "failed"}
        position = str(s.position) if s.position else ""
        out.append(CdcLag(s.source, s.status, position, behind, seconds, failed, s.message))
    return out
