"""Admin statements run outside any timing or test (create and drop databases, CHECKPOINT).

Shared by benches and tests.
"""

from __future__ import annotations

from typing import Any


def admin_mysql(server: Any, sql: str) -> None:
    """Run ``sql`` on the MySQL server with no database selected (autocommit)."""
    conn = server.connect(database="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def admin_pg(server: Any, sql: str) -> None:
    """Run ``sql`` on PostgreSQL's maintenance database (autocommit: CREATE/DROP DATABASE)."""
    conn = server.connect(database="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def raw_rows(server: Any, sql: str) -> list[tuple[Any, ...]]:
    """Every row of ``sql`` on the server's database, as the server's bytes (comparisons byte for byte)."""
    from clinicflow.connectors.mysql.sessions import raw_connection

    conn = raw_connection(server)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()
