"""SIGKILL in the middle of a large table's load, then rerun: nothing duplicated, nothing missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental.tables.config import ExtractionStrategy, TableConfig
from clinicflow.opendental.warehouse import load_steps
from clinicflow_dev import generator
from tests.integration.opendental.warehouse.conftest import pg_query

ROOT = Path(__file__).resolve().parents[4]
CONFIG = TableConfig(
    primary_key=["ProcNum"],
    extraction_strategy=ExtractionStrategy.incremental,
    incremental_columns=["DateTStamp"],
    batch_size=4000,
)

_RUNNER = """
import json, sys
from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental.warehouse import load_steps
from clinicflow.opendental.tables.config import TableConfig
args = json.loads(sys.argv[1])
options = load_steps.LoadOptions(full_refresh=args["full_refresh"])
load_steps.load_table_once(MySQLServer(**args["replica"]), PostgresServer(**args["pg"]), "procedurelog",
                           TableConfig(**args["config"]), options)
"""


def _start(replica: MySQLServer, pg: PostgresServer, *, full_refresh: bool) -> subprocess.Popen:
    args = {
        "replica": replica.model_dump(mode="json", exclude={"password", "block_type_slug"}),
        "pg": pg.model_dump(mode="json", exclude={"password", "block_type_slug"}),
        "config": CONFIG.model_dump(mode="json"),
        "full_refresh": full_refresh,
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", _RUNNER, json.dumps(args)], cwd=ROOT, env=env)


def _kill_when(proc: subprocess.Popen, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the load finished (exit {proc.returncode}) before {what}: make the table larger")
        if condition():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _assert_equal(replica: MySQLServer, pg: PostgresServer) -> None:
    conn = replica.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), MAX(`ProcNum`) FROM `procedurelog`")
        count, top = cur.fetchone()
    conn.close()
    assert pg_query(pg, 'SELECT count(*), count(DISTINCT "ProcNum"), max("ProcNum") FROM raw.procedurelog')[0] == (
        count,
        count,
        top,
    )


@pytest.mark.slow
def test_sigkill_during_loads_then_rerun(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    replica, pg = make_mysql_db("kill"), make_pg_db("kill")
    generator.create_schema(replica, edge_cases=False)
    generator.fill_table(replica, "procedurelog", 20_000)
    load_steps.setup_target(pg)
    assert load_steps.load_table_once(replica, pg, "procedurelog", CONFIG).mode == "full"
    first_mark = pg_query(pg, "SELECT watermark FROM clinicflow.load_state WHERE table_name = 'procedurelog'")[0][0]

    # 1. Incremental: 100k new rows in 4,000-row transactions; killed once some have committed.
    generator.fill_table(replica, "procedurelog", 100_000, fixed_timestamp="2026-01-01 00:00:00")
    proc = _start(replica, pg, full_refresh=False)
    _kill_when(
        proc,
        lambda: (
            pg_query(pg, "SELECT watermark FROM clinicflow.load_state WHERE table_name = 'procedurelog'")[0][0]
            != first_mark
        ),
        "the first merged chunk",
    )
    loaded = pg_query(pg, "SELECT count(*) FROM raw.procedurelog")[0][0]
    assert 20_000 < loaded < 120_000, loaded
    assert pg_query(pg, 'SELECT count(*) - count(DISTINCT "ProcNum") FROM raw.procedurelog')[0][0] == 0
    outcome = load_steps.load_table_once(replica, pg, "procedurelog", CONFIG)
    assert outcome.mode == "incremental", outcome.error
    assert outcome.verification == "ok", outcome.error
    _assert_equal(replica, pg)

    # 2. Full refresh killed while COPYing into the staging table: raw keeps the complete old table.
    proc = _start(replica, pg, full_refresh=True)
    _kill_when(
        proc,
        lambda: (
            pg_query(
                pg,
                "SELECT COALESCE((SELECT n_tup_ins FROM pg_stat_user_tables WHERE "
                "schemaname = 'clinicflow_stage' AND relname = 'procedurelog'), 0)",
            )[0][0]
            > 0
            or pg_query(pg, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY \"clinicflow_stage\"%%'")[0][
                0
            ]
            > 0
        ),
        "the staging COPY",
    )
    _assert_equal(replica, pg)
    outcome = load_steps.load_table_once(replica, pg, "procedurelog", CONFIG, load_steps.LoadOptions(full_refresh=True))
    assert outcome.mode == "full"
    assert outcome.verification == "ok"
    assert outcome.rows == 120_000
    _assert_equal(replica, pg)
