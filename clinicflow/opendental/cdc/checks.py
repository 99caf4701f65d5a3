"""What a source must offer before CDC starts: row binlog, full row images, a free server id, retention, grants."""

from __future__ import annotations

import re
from dataclasses import dataclass

from clinicflow.connectors.mysql.sessions import catalog_text, raw_connected
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection
from clinicflow.core.errors import ClinicflowError


class CdcError(ClinicflowError):
    """CDC cannot run for a source (or a table); the message names the server setting or the table."""


@dataclass(frozen=True)
class BinlogPosition:
    """A point in the source's binlog: the next event to read is at ``pos`` of ``file``."""

    file: str
    pos: int

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

    def key(self) -> tuple[int, int]:
        """Orders positions across files (``mysql-bin.000012`` < ``mysql-bin.000013``)."""
        suffix = re.search(r"(\d+)$", self.file)
        return (int(suffix.group(1)) if suffix else 0, self.pos)


def _variables(conn: Connection, names: list[str]) -> dict[str, str | None]:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ", ".join(["%s"] * len(names)) + ")", names)
        return {catalog_text(r[0]) or "": catalog_text(r[1]) for r in cur.fetchall()}


def retention_seconds(values: dict[str, str | None]) -> int | None:
    """How long the server keeps binlog files (None: forever); MySQL 8 and MariaDB 10.6+ use seconds."""
    seconds = int(values.get("binlog_expire_logs_seconds") or 0)
    if seconds:
        return seconds
    days = float(values.get("expire_logs_days") or 0)
    return int(days * 86400) or None


def master_position(conn: Connection) -> BinlogPosition:
    """The source's current binlog end (SHOW MASTER STATUS; MySQL 8.4 names it SHOW BINARY LOG STATUS)."""
    with conn.cursor() as cur:
        try:
            cur.execute("SHOW MASTER STATUS")
        except Exception:  # noqa: BLE001 - MySQL 8.4 removed the old spelling
            cur.execute("SHOW BINARY LOG STATUS")
        row = cur.fetchone()
    if not row:
        raise CdcError(
            "the source has no binary log (SHOW MASTER STATUS is empty): start it with log_bin "
            "(log-bin=mysql-bin) and binlog_format=ROW, binlog_row_image=FULL (docs/cdc.md)"
        )
    return BinlogPosition(catalog_text(row[0]) or "", int(catalog_text(row[1]) or 0))


def binlog_files(conn: Connection) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return [catalog_text(r[0]) or "" for r in cur.fetchall()]


def check_position_available(conn: Connection, position: BinlogPosition) -> None:
    """A stored position whose file the server has purged cannot be resumed: say so, naming the setting."""
    if position.file not in binlog_files(conn):
        raise CdcError(
            f"binlog position {position} was purged by the source (binlog_expire_logs_seconds / "
            "expire_logs_days too short for the time CDC was stopped): changes since then are lost to "
            "CDC; run `clinicflow cdc start --resnapshot` (a fresh full copy), the nightly goes on as usual"
        )


def _has_grant(grants: list[str], *privileges: str) -> bool:
    for line in grants:
        upper = line.upper()
        if " ON *.*" not in upper:
            continue
        if "ALL PRIVILEGES" in upper or any(p in upper for p in privileges):
            return True
    return False


def precheck_problems(src: MySQLServerLike, *, server_id: int, retention_hours: float) -> list[str]:
    """Every reason the source cannot serve CDC (empty: it can), each naming the setting or privilege."""
    with raw_connected(src) as conn:
        values = _variables(
            conn,
            [
                "log_bin",
                "binlog_format",
                "binlog_row_image",
                "server_id",
                "binlog_expire_logs_seconds",
                "expire_logs_days",
            ],
        )
        problems = []
        if (values.get("log_bin") or "OFF").upper() != "ON":
            problems.append("binary log is off: set log_bin (log-bin=mysql-bin in the server's config) and restart")
        if (values.get("binlog_format") or "").upper() != "ROW":
            problems.append(f"binlog_format is {values.get('binlog_format')}: set binlog_format=ROW")
        if (values.get("binlog_row_image") or "FULL").upper() != "FULL":
            problems.append(f"binlog_row_image is {values.get('binlog_row_image')}: set binlog_row_image=FULL")
        if str(server_id) == (values.get("server_id") or ""):
            problems.append(f"server_id {server_id} is the source's own server_id: pass another --server-id")
        with conn.cursor() as cur:
            try:
                cur.execute("SHOW SLAVE HOSTS")
                taken = {int(catalog_text(r[0]) or 0) for r in cur.fetchall()}
            except Exception:  # noqa: BLE001 - needs REPLICATION MASTER ADMIN on MariaDB; the grant check names it
                taken = set()
        if server_id in taken:
            problems.append(
                f"server_id {server_id} is already used by a replica of this source (SHOW SLAVE HOSTS): "
                "pass another --server-id"
            )
        kept = retention_seconds(values)
        if kept is not None and kept < retention_hours * 3600:
            problems.append(
                f"binlog retention is {kept / 3600:.1f} h (binlog_expire_logs_seconds / expire_logs_days)"
                f", shorter than the catch-up window of {retention_hours:g} h: raise it"
            )
        with conn.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = [catalog_text(r[0]) or "" for r in cur.fetchall()]
        if not _has_grant(grants, "REPLICATION SLAVE"):
            problems.append(
                f"user {src.username!r} lacks REPLICATION SLAVE: GRANT REPLICATION SLAVE ON *.* TO '{src.username}'@..."
            )
        if not _has_grant(grants, "REPLICATION CLIENT", "BINLOG MONITOR"):
            problems.append(
                f"user {src.username!r} lacks REPLICATION CLIENT (BINLOG MONITOR on MariaDB 10.5+): "
                f"GRANT REPLICATION CLIENT ON *.* TO '{src.username}'@..."
            )
        return problems


def require_cdc_ready(src: MySQLServerLike, *, server_id: int, retention_hours: float) -> None:
    """Raise :class:`CdcError` listing every problem of :func:`precheck_problems`."""
    problems = precheck_problems(src, server_id=server_id, retention_hours=retention_hours)
    if problems:
        raise CdcError(
            f"source {src.describe()} cannot serve CDC: "
            + "; ".join(problems)
            + " (the nightly goes on as usual; docs/cdc.md)"
        )


def snapshot_position(src: MySQLServerLike) -> BinlogPosition:
    """The binlog position of a consistent read, taken BEFORE the copy it anchors.

    MariaDB reports the position matching a consistent-snapshot transaction without any lock
    (``binlog_snapshot_file/position``); elsewhere SHOW MASTER STATUS is read under FLUSH TABLES WITH READ LOCK
    when the user may take it. Every change after the position is replayed by re-reading the changed keys,
    so a copy that starts after this point may already hold some of them: re-applying them is harmless.
    """
    with raw_connected(src) as conn:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = {catalog_text(r[0]): catalog_text(r[1]) for r in cur.fetchall()}
            cur.execute("COMMIT")
        if status.get("binlog_snapshot_file"):
            return BinlogPosition(
                status["binlog_snapshot_file"] or "", int(status.get("binlog_snapshot_position") or 0)
            )
        with conn.cursor() as cur:
            try:
                cur.execute("FLUSH TABLES WITH READ LOCK")
            except Exception:  # noqa: BLE001 - no RELOAD privilege: the plain read is still before the copy
                return master_position(conn)
            try:
                return master_position(conn)
            finally:
                cur.execute("UNLOCK TABLES")
