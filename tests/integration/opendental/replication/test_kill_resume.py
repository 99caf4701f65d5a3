"""A run killed with SIGKILL mid-table, then rerun, leaves the replica equal to the source."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from blocks.databases import MySQLServer
from clinicflow.connectors.mysql.checksums import table_checksum
from clinicflow.connectors.mysql.sessions import raw_connection
from clinicflow.opendental.replication.copy_plan import STATE_TABLE
from clinicflow_dev import generator
from flows.replicate import replicate_tables
from tests.integration.opendental.replication.conftest import PROJECT_ROOT, PYTHON, demo_tables, write_tables_file

pytestmark = pytest.mark.slow


def _start_run(src: MySQLServer, dst: MySQLServer, tables_file: str) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = dict(
        os.environ,
        CLINICFLOW_CREDENTIALS="env",
        CLINICFLOW_OPENDENTAL_SOURCE_DATABASE=src.database,
        CLINICFLOW_OPENDENTAL_REPLICATION_DATABASE=dst.database,
        PREFECT_API_URL=PREFECT_API_URL.value() or "",
        CLINICFLOW_REPLICATION_WORKERS="2",
    )
    code = f"from flows.replicate import replicate_tables; replicate_tables(tables_file={tables_file!r})"
    return subprocess.Popen(
        [PYTHON, "-c", code], cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _kill_when(proc: subprocess.Popen, condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed mid-table; make the table larger")
        if condition():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the run made no visible progress")


def _scalar(server: MySQLServer, sql: str) -> object:
    conn = raw_connection(server)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return None if row is None or row[0] is None else (row[0].decode() if isinstance(row[0], bytes) else row[0])
    finally:
        conn.close()


def _assert_equal_no_duplicates(src: MySQLServer, dst: MySQLServer) -> None:
    assert table_checksum(dst, "procedurelog") == table_checksum(src, "procedurelog")
    dupes = _scalar(dst, "SELECT COUNT(*) - COUNT(DISTINCT ProcNum) FROM procedurelog")
    assert int(dupes) == 0


def test_sigkill_mid_table_then_rerun(prefect_server, make_mysql_db, point_blocks_at, tmp_path: Path) -> None:
    src, dst = make_mysql_db("ksrc"), make_mysql_db("kdst")
    generator.create_procedurelog_like(src, 250_000)
    point_blocks_at(src, dst)
    tables_file = write_tables_file(
        tmp_path / "tables.yml", {"procedurelog": demo_tables(batch_size=4000)["procedurelog"]}
    )

    # 1. Killed during the first (full) copy: the shadow table holds part of the rows.
    proc = _start_run(src, dst, tables_file)
    shadow_rows = (
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = 'procedurelog__cf_shadow'"
    )
    _kill_when(proc, lambda: int(_scalar(dst, shadow_rows) or 0) > 25_000)
    assert (
        int(
            _scalar(
                dst,
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = 'procedurelog'",
            )
        )
        == 0
    )
    replicate_tables(tables_file=tables_file)
    _assert_equal_no_duplicates(src, dst)

    # 2. Killed in the middle of an incremental run, after some pages advanced the watermark.
    generator.fill_table(src, "procedurelog", 100_000, fixed_timestamp=None)
    conn = raw_connection(src)
    with conn.cursor() as cur:  # new rows: later, distinct change stamps
        cur.execute(
            "UPDATE procedurelog SET DateTStamp = TIMESTAMPADD(SECOND, ProcNum, '2031-01-01') WHERE ProcNum > 250000"
        )
    conn.close()
    watermark = f"SELECT watermark FROM {STATE_TABLE} WHERE table_name = 'procedurelog'"
    before = _scalar(dst, watermark)
    proc = _start_run(src, dst, tables_file)
    _kill_when(proc, lambda: _scalar(dst, watermark) != before)
    copied = int(_scalar(dst, "SELECT COUNT(*) FROM procedurelog"))
    assert 250_000 < copied < 350_000, "the kill should land mid-run"
    generator.apply_changes(src, "procedurelog", updates=500, deletes=0)
    replicate_tables(tables_file=tables_file)
    _assert_equal_no_duplicates(src, dst)
