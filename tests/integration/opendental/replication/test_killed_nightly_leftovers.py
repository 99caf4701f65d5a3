"""``clinicflow nightly`` SIGKILLed mid-copy leaves nothing running and no option file behind; the next run
drops the shadow tables the killed one left."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql.sessions import raw_connection
from clinicflow_dev import generator
from tests.integration.opendental.replication.conftest import PROJECT_ROOT, PYTHON, demo_tables, write_tables_file

pytestmark = pytest.mark.slow


def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current:
                found.append(child)
                frontier.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def replica_tables(server: MySQLServer, pattern: str) -> list[str]:
    conn = raw_connection(server)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME LIKE %s ORDER BY 1",
                (pattern,),
            )
            return [r[0].decode() if isinstance(r[0], bytes) else r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def shadow_rows(server: MySQLServer) -> int:
    conn = raw_connection(server)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = 'procedurelog__cf_shadow'"
            )
            row = cur.fetchone()
            return int(row[0] or 0) if row else 0
    finally:
        conn.close()


def nightly_env(src: MySQLServer, dst: MySQLServer, pg: PostgresServer, tables_file: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # the embedded server
    (tmp / "tmp").mkdir(exist_ok=True)
    env.update(
        CLINICFLOW_CREDENTIALS="env",
        CLINICFLOW_OPENDENTAL_SOURCE_DATABASE=src.database,
        CLINICFLOW_OPENDENTAL_REPLICATION_DATABASE=dst.database,
        CLINICFLOW_ANALYTICS_POSTGRES_DATABASE=pg.database,
        CLINICFLOW_TABLES_FILE=tables_file,
        CLINICFLOW_REPLICATION_WORKERS="2",
        PREFECT_HOME=str(tmp / "prefect-home"),
        TMPDIR=str(tmp / "tmp"),
    )
    return env


def test_sigkilled_nightly_leaves_no_server_no_option_file_and_the_next_run_drops_the_shadow(
    make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer], tmp_path: Path
) -> None:
    src, dst, pg = make_mysql_db("nksrc"), make_mysql_db("nkdst"), make_pg_db("nkpg")
    generator.create_procedurelog_like(src, 250_000)
    tables_file = write_tables_file(
        tmp_path / "tables.yml", {"procedurelog": demo_tables(batch_size=4000)["procedurelog"]}
    )
    env = nightly_env(src, dst, pg, tables_file, tmp_path)
    option_files_before = set(glob.glob("/tmp/cf_my_*.cnf"))
    log = tmp_path / "killed.log"

    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "clinicflow.cli", "nightly"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server_pids: set[int] = set()
    client_pids: set[int] = set()
    deadline = time.monotonic() + 300
    try:
        while True:
            assert proc.poll() is None, "the nightly ended before the kill point:\n" + log.read_text()
            assert time.monotonic() < deadline, "the copy never got under way:\n" + log.read_text()
            for pid in children_of(proc.pid):
                line = cmdline(pid)
                if "prefect.server.api.server:create_app" in line:
                    server_pids.add(pid)
                elif "--defaults-extra-file=" in line:
                    client_pids.add(pid)
            if server_pids and client_pids and shadow_rows(dst) > 20_000:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert replica_tables(dst, "%\\_\\_cf\\_shadow") == ["procedurelog__cf_shadow"]
    leftovers = server_pids | client_pids
    gone_by = time.monotonic() + 15
    while any(alive(pid) for pid in leftovers) and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert not [pid for pid in leftovers if alive(pid)], {pid: cmdline(pid)[:120] for pid in leftovers if alive(pid)}
    # No option file: none by path (the run's TMPDIR and /tmp), and no process holds the anonymous one.
    assert os.listdir(tmp_path / "tmp") == []
    assert set(glob.glob("/tmp/cf_my_*.cnf")) <= option_files_before
    for pid in leftovers:
        try:
            targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        assert not any("clinicflow-mysql-options" in target for target in targets)

    # A leftover of a table tonight's run does not copy fully is dropped too, and named.
    conn = raw_connection(dst)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE ghost__cf_shadow (id int PRIMARY KEY)")
        cur.execute("CREATE TABLE ghost__cf_old (id int PRIMARY KEY)")
    conn.close()
    rerun = subprocess.run(
        [PYTHON, "-m", "clinicflow.cli", "nightly"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output
    assert (
        "dropped 3 table(s) a killed run left in the replica: ghost__cf_old, ghost__cf_shadow, "
        "procedurelog__cf_shadow" in output
    )
    assert replica_tables(dst, "%\\_\\_cf\\_%") == []
    # The rerun's server ended with it too: no server process anywhere runs on this test's Prefect home.
    assert servers_on(tmp_path / "prefect-home") == []


def servers_on(prefect_home: Path) -> list[int]:
    """Live embedded Prefect servers whose PREFECT_HOME is ``prefect_home``."""
    marker = f"PREFECT_HOME={prefect_home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and "prefect.server.api.server:create_app" in cmdline(int(entry)) and alive(int(entry)):
            try:
                if marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found.append(int(entry))
            except OSError:
                continue
    return found
