"""Fixtures of the processing tests: an analytics database with the processing tables, a local bucket."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from blocks.databases import PostgresServer
from clinicflow.dicom.storage import LocalFolderWriter
from clinicflow.processing import store


@pytest.fixture
def analytics(make_pg_db: Callable[[str], PostgresServer]) -> PostgresServer:
    server = make_pg_db("processing")
    conn = server.connect()
    try:
        store.ensure_tables(conn)
    finally:
        conn.close()
    return server


@pytest.fixture
def bucket(tmp_path: Path) -> LocalFolderWriter:
    return LocalFolderWriter(tmp_path / "bucket")


def pg_rows(server: PostgresServer, sql: str, params: Any = None) -> list[tuple]:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()
