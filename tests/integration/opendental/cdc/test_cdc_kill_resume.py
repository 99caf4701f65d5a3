"""SIGKILL of ``clinicflow cdc start`` at random points, ten times, then a restart: replica and raw equal the source.

The process boundary is the point here (a kill between the rows and their position), so CDC runs as
``python -m clinicflow.cli cdc start --until-caught-up`` in a subprocess.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinicflow_dev.binlog_server import cli_env
from tests.integration.opendental.cdc.cdc_support import assert_equal, create_source, mutate_day, write_tables_yml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[4]


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clinicflow.cli",
            "cdc",
            "start",
            "--until-caught-up",
            "--batch-events",
            "7",
            "--batch-seconds",
            "0",
            "--server-id",
            "5101",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_sigkill_at_random_points_then_restart_loses_and_duplicates_nothing(
    make_binlog_db, make_mysql_db, make_pg_db, tmp_path: Path
):
    src, replica, pg = make_binlog_db("cdckill"), make_mysql_db("cdckill"), make_pg_db("cdckill")
    tables_file, config = write_tables_yml(tmp_path)
    create_source(src)
    env = cli_env(src, replica, pg, tables_file)
    rng = random.Random(31)
    killed = 0
    for trial in range(10):
        if trial:
            mutate_day(src, trial)
        proc = _start(env)
        time.sleep(rng.uniform(0.8, 3.0))  # the interpreter starts in ~1-2 s: kills land before, in and after work
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    mutate_day(src, 11)
    proc = _start(env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode(errors="replace")
    assert killed >= 5, f"only {killed} of 10 runs were killed before they finished"
    assert_equal(src, replica, pg, config)
