"""Where CDC keeps its applied position (replica and ``raw``, each in the transaction of its rows) and its tables."""

from __future__ import annotations

import time
from dataclasses import dataclass

from clinicflow.connectors.mysql.sessions import catalog_text
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection, Cursor, PgConnection
from clinicflow.core.sql import quote_ident, quote_qualified
from clinicflow.opendental.cdc.checks import BinlogPosition

REPLICA_STATE = "_clinicflow_cdc_state"
REPLICA_TABLES = "_clinicflow_cdc_tables"
PG_STATE = "cdc_state"

# A running CDC writes its heartbeat at least this often; older means it stopped without saying so.
HEARTBEAT_STALE_SECONDS = 600


def source_id(src: MySQLServerLike) -> str:
    """The name of a source in the state tables (no credentials)."""
    return f"{src.host}:{src.port}/{src.database}"


def ensure_replica_state(conn: Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(REPLICA_STATE, 'mysql')} ("
            " source_id varchar(255) NOT NULL PRIMARY KEY, log_file varchar(255) NULL, log_pos bigint NULL,"
            " status varchar(16) NOT NULL, stop_requested tinyint NOT NULL DEFAULT 0,"
            " events_applied bigint NOT NULL DEFAULT 0, last_event_at bigint NULL, applied_at double NULL,"
            " heartbeat_at double NULL, server_id bigint NULL, message text NULL"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(REPLICA_TABLES, 'mysql')} ("
            " source_id varchar(255) NOT NULL, table_name varchar(64) NOT NULL, status varchar(16) NOT NULL,"
            " reason text NULL, updated_at double NOT NULL, PRIMARY KEY (source_id, table_name)"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )


def ensure_pg_state(pg_conn: PgConnection, state_schema: str) -> None:
    with pg_conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(state_schema, 'postgres')}")
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {quote_qualified(state_schema, PG_STATE, 'postgres')} ("
            " source_id text PRIMARY KEY, log_file text NOT NULL, log_pos bigint NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    pg_conn.commit()


def write_replica_position(
    cur: Cursor, source: str, position: BinlogPosition, events: int, last_event_at: int | None
) -> None:
    """Inside the replica transaction of the rows: the position they bring the replica to."""
    cur.execute(
        f"INSERT INTO {quote_ident(REPLICA_STATE, 'mysql')} (source_id, log_file, log_pos, status,"
        " events_applied, last_event_at, applied_at, heartbeat_at)"
        " VALUES (%s, %s, %s, 'running', %s, %s, %s, %s)"
        " ON DUPLICATE KEY UPDATE log_file = VALUES(log_file), log_pos = VALUES(log_pos),"
        " events_applied = events_applied + VALUES(events_applied),"
        " last_event_at = COALESCE(VALUES(last_event_at), last_event_at),"
        " applied_at = VALUES(applied_at), heartbeat_at = VALUES(heartbeat_at)",
        (source, position.file, position.pos, events, last_event_at, time.time(), time.time()),
    )


def write_pg_position(cur: Cursor, state_schema: str, source: str, position: BinlogPosition) -> None:
    """Inside the PostgreSQL transaction of the rows: the position they bring ``raw`` to."""
    cur.execute(
        f"INSERT INTO {quote_qualified(state_schema, PG_STATE, 'postgres')} (source_id, log_file, log_pos,"
        " applied_at) VALUES (%s, %s, %s, now()) ON CONFLICT (source_id) DO UPDATE SET"
        " log_file = EXCLUDED.log_file, log_pos = EXCLUDED.log_pos, applied_at = EXCLUDED.applied_at",
        (source, position.file, position.pos),
    )


def read_replica_position(conn: Connection, source: str) -> BinlogPosition | None:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT log_file, log_pos FROM {quote_ident(REPLICA_STATE, 'mysql')} WHERE source_id = %s", (source,)
        )
        row = cur.fetchone()
    if not row or row[0] is None:
        return None
    return BinlogPosition(catalog_text(row[0]) or "", int(catalog_text(row[1]) or 0))


def read_pg_position(pg_conn: PgConnection, state_schema: str, source: str) -> BinlogPosition | None:
    with pg_conn.cursor() as cur:
        cur.execute(
            f"SELECT log_file, log_pos FROM {quote_qualified(state_schema, PG_STATE, 'postgres')} WHERE source_id = %s",
            (source,),
        )
        row = cur.fetchone()
    pg_conn.commit()
    return BinlogPosition(row[0], int(row[1])) if row else None


def set_status(
    conn: Connection,
    source: str,
    status: str,
    *,
    message: str | None = None,
    server_id: int | None = None,
    clear_stop: bool = False,
) -> None:
    """running / stopped / failed, with the heartbeat; autocommit connection."""
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {quote_ident(REPLICA_STATE, 'mysql')} (source_id, status, message, heartbeat_at,"
            " server_id) VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE status = VALUES(status),"
            " message = VALUES(message), heartbeat_at = VALUES(heartbeat_at),"
            " server_id = COALESCE(VALUES(server_id), server_id)" + (", stop_requested = 0" if clear_stop else ""),
            (source, status, message, time.time(), server_id),
        )


def heartbeat(conn: Connection, source: str) -> bool:
    """Mark the runner alive; True when a stop was requested (``clinicflow cdc stop``)."""
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {quote_ident(REPLICA_STATE, 'mysql')} SET heartbeat_at = %s WHERE source_id = %s",
            (time.time(), source),
        )
        cur.execute(f"SELECT stop_requested FROM {quote_ident(REPLICA_STATE, 'mysql')} WHERE source_id = %s", (source,))
        row = cur.fetchone()
    return bool(row and int(catalog_text(row[0]) or 0))


def request_cdc_stop(conn: Connection, source: str) -> bool:
    """Ask a running CDC of ``source`` to stop after its current batch; False when none is recorded."""
    ensure_replica_state(conn)
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {quote_ident(REPLICA_STATE, 'mysql')} SET stop_requested = 1 WHERE source_id = %s", (source,)
        )
        return bool(cur.rowcount)


def set_table(conn: Connection, source: str, table: str, status: str, reason: str | None = None) -> None:
    """A table's CDC status: ``active`` (CDC keeps it current) or ``failed`` (the nightly copies it; reason why)."""
    with conn.cursor() as cur:
        cur.execute(
            f"REPLACE INTO {quote_ident(REPLICA_TABLES, 'mysql')} (source_id, table_name, status, reason,"
            " updated_at) VALUES (%s, %s, %s, %s, %s)",
            (source, table, status, reason, time.time()),
        )


def table_statuses(conn: Connection, source: str) -> dict[str, tuple[str, str | None]]:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT table_name, status, reason FROM {quote_ident(REPLICA_TABLES, 'mysql')} WHERE source_id = %s",
            (source,),
        )
        return {catalog_text(r[0]) or "": (catalog_text(r[1]) or "", catalog_text(r[2])) for r in cur.fetchall()}


def cdc_active_tables(replica_conn: Connection) -> set[str]:
    """Tables a live CDC keeps current in this replica (the nightly then skips their watermark copy).

    Live: status running and a heartbeat newer than :data:`HEARTBEAT_STALE_SECONDS`. No state table: none.
    """
    with replica_conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (REPLICA_TABLES,),
        )
        if not int(catalog_text(cur.fetchall()[0][0]) or 0):
            return set()
        cur.execute(
            f"SELECT t.table_name FROM {quote_ident(REPLICA_TABLES, 'mysql')} t JOIN "
            f"{quote_ident(REPLICA_STATE, 'mysql')} s ON s.source_id = t.source_id WHERE t.status = 'active' "
            "AND s.status = 'running' AND s.heartbeat_at > %s",
            (time.time() - HEARTBEAT_STALE_SECONDS,),
        )
        return {catalog_text(r[0]) or "" for r in cur.fetchall()}


def cdc_keeps_current(replica: MySQLServerLike, table: str) -> bool:
    """Whether a live CDC keeps ``table`` of this replica current (see :func:`cdc_active_tables`)."""
    from clinicflow.connectors.mysql.sessions import raw_connected

    with raw_connected(replica) as conn:
        return table in cdc_active_tables(conn)


@dataclass(frozen=True)
class CdcStatus:
    """One source's CDC as ``clinicflow cdc status`` and ``clinicflow status`` show it."""

    source: str
    status: str
    position: BinlogPosition | None
    events_applied: int
    applied_at: float | None
    heartbeat_at: float | None
    message: str | None
    tables: dict[str, tuple[str, str | None]]


def read_statuses(conn: Connection) -> list[CdcStatus]:
    """Every source recorded in this replica (empty when CDC never ran here)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (REPLICA_STATE,),
        )
        if not int(catalog_text(cur.fetchone()[0]) or 0):
            return []
        cur.execute(
            f"SELECT source_id, status, log_file, log_pos, events_applied, applied_at, heartbeat_at, message "
            f"FROM {quote_ident(REPLICA_STATE, 'mysql')} ORDER BY source_id"
        )
        rows = cur.fetchall()
    out = []
    for r in rows:
        text = [catalog_text(v) for v in r]
        source = text[0] or ""
        position = BinlogPosition(text[2], int(text[3] or 0)) if text[2] else None
        out.append(
            CdcStatus(
                source,
                text[1] or "",
                position,
                int(text[4] or 0),
                float(text[5]) if text[5] else None,
                float(text[6]) if text[6] else None,
                text[7],
                table_statuses(conn, source),
            )
        )
    return out
