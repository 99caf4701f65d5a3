"""Every CLI command runs with a sentinel password; one is SIGKILLed mid-run. The sentinel appears nowhere:
command output, logs and artifacts (both in the Prefect home's database), the Prefect home, the run's files,
files under /tmp and /dev/shm, the metrics and state tables, and the environment and command line of every
child process (the ``mariadb`` client and the embedded Prefect server, read from /proc while they run)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from blocks.databases import MySQLServer, PostgresServer
from tests.conftest import mysql_exec, mysql_query
from tests.integration.opendental.replication.conftest import PROJECT_ROOT, PYTHON
from tests.integration.opendental.replication.test_killed_nightly_leftovers import children_of, cmdline

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TOKEN = "sntl" + uuid.uuid4().hex[:16]
# Every character an option file, a shell, a URL or a log format could trip on, around the searched token.
PASSWORD = f"P'q\"#;\\ {TOKEN}$%@:/?\n&end"
USER = f"cf_snt_{uuid.uuid4().hex[:8]}"
HOSTS = ("%", "localhost", "127.0.0.1")


@pytest.fixture
def sentinel_user(mysql_server: MySQLServer) -> str:
    for host in HOSTS:
        mysql_exec(mysql_server, f"DROP USER IF EXISTS '{USER}'@'{host}'")
    conn = mysql_server.connect(autocommit=True)
    with conn.cursor() as cur:
        for host in HOSTS:
            cur.execute(f"CREATE USER '{USER}'@'{host.replace('%', '%%')}' IDENTIFIED BY %s", (PASSWORD,))
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}'")
    conn.close()
    yield USER
    mysql_exec(mysql_server, *(f"DROP USER IF EXISTS '{USER}'@'{host}'" for host in HOSTS))


def _env(tmp: Path, src: MySQLServer, replica: MySQLServer, pg: PostgresServer, dicom_pg: PostgresServer) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLINICFLOW_"))}
    for name in ("home", "prefect-home", "tmp"):
        (tmp / name).mkdir(exist_ok=True)
    env.update(
        HOME=str(tmp / "home"),
        PREFECT_HOME=str(tmp / "prefect-home"),
        TMPDIR=str(tmp / "tmp"),
        CLINICFLOW_CREDENTIALS="env",
        CLINICFLOW_TABLES_FILE=str(tmp / "tables.yml"),
        CLINICFLOW_REPLICATION_WORKERS="2",
    )
    for block, server, user in (
        ("OPENDENTAL_SOURCE", src, USER),
        ("OPENDENTAL_REPLICATION", replica, USER),
        ("ANALYTICS_POSTGRES", pg, pg.username),
        ("DICOM_REPORTS_POSTGRES", dicom_pg, dicom_pg.username),
    ):
        env.update(
            {
                f"CLINICFLOW_{block}_HOST": "127.0.0.1",
                f"CLINICFLOW_{block}_PORT": str(server.port),
                f"CLINICFLOW_{block}_USER": user,
                f"CLINICFLOW_{block}_DATABASE": server.database,
                # PostgreSQL trusts local connections: the password is passed along, never checked.
                f"CLINICFLOW_{block}_PASSWORD": PASSWORD,
            }
        )
    env["CLINICFLOW_DICOM_REPORTS_BUCKET_PATH"] = str(tmp / "bucket")
    return env


def _run(env: dict, tmp: Path, name: str, *args: str, expect: tuple[int, ...] = (0,)) -> None:
    log = tmp / "outputs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "wb") as out:
        result = subprocess.run(
            [PYTHON, "-m", "clinicflow.cli", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
    assert result.returncode in expect, f"clinicflow {' '.join(args)} exited {result.returncode}:\n" + log.read_text()


def _files_with_token(root: Path, since: float | None = None, limit: int = 64 << 20) -> list[str]:
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            try:
                info = path.lstat()
                if not path.is_file() or path.is_symlink() or info.st_size > limit:
                    continue
                if since is not None and info.st_mtime < since:
                    continue
                if TOKEN.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def _pg_tables_text(server: PostgresServer) -> str:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN "
                "('pg_catalog', 'information_schema', 'raw') AND table_type = 'BASE TABLE'"
            )
            text = []
            for schema, table in cur.fetchall():
                cur.execute(f'SELECT t::text FROM "{schema}"."{table}" AS t')
                text += [row[0] for row in cur.fetchall()]
            return "\n".join(text)
    finally:
        conn.close()


def test_the_sentinel_password_is_nowhere(
    sentinel_user,
    mysql_server,
    make_mysql_db: Callable[[str], MySQLServer],
    make_pg_db: Callable[[str], PostgresServer],
    tmp_path: Path,
) -> None:
    started = time.time() - 1
    src, replica = make_mysql_db("sntsrc"), make_mysql_db("sntrep")
    pg, dicom_pg = make_pg_db("sntpg"), make_pg_db("sntdicom")
    env = _env(tmp_path, src, replica, pg, dicom_pg)

    _run(
        env,
        tmp_path,
        "generate",
        "generate-opendental",
        "--database",
        src.database,
        "--scale",
        "0.05",
        "--filler-tables",
        "3",
        "--procedurelog-rows",
        "300000",
    )
    _run(env, tmp_path, "analyze", "analyze-schema", "--output", str(tmp_path / "tables.yml"))
    _run(env, tmp_path, "validate", "validate", "--live", "--file", str(tmp_path / "tables.yml"))
    _run(env, tmp_path, "show", "show", "procedurelog", "--file", str(tmp_path / "tables.yml"))
    _run(env, tmp_path, "check", "analyze-schema", "--check", "--output", str(tmp_path / "tables.yml"))
    # A failed login's message names the user and server, never the password.
    _run(
        {**env, "CLINICFLOW_OPENDENTAL_SOURCE_PASSWORD": PASSWORD + "-wrong"},
        tmp_path,
        "wrong",
        "validate",
        "--live",
        "--file",
        str(tmp_path / "tables.yml"),
        expect=(1, 2),
    )

    # The nightly, SIGKILLed while the mariadb client copies procedurelog: read every child's environment first.
    environments: dict[int, bytes] = {}
    log = tmp_path / "outputs" / "killed-nightly.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "clinicflow.cli", "nightly"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    parent_line = cmdline(proc.pid)
    try:
        deadline = time.monotonic() + 300
        seen_client = seen_server = False
        while not (seen_client and seen_server):
            assert proc.poll() is None, "the nightly ended before the kill point:\n" + log.read_text()
            assert time.monotonic() < deadline, "the copy never got under way:\n" + log.read_text()
            for pid in children_of(proc.pid):
                line = cmdline(pid)
                if not line or line == parent_line:
                    continue  # forked, not yet exec'd: still the parent's own image and environment
                try:
                    environments[pid] = (
                        Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
                    )
                except OSError:
                    continue
                seen_client = seen_client or ("mariadb" in line and "--defaults-extra-file=/dev/fd/" in line)
                seen_server = seen_server or "prefect.server.api.server:create_app" in line
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(environments) >= 2
    assert [pid for pid, data in environments.items() if TOKEN.encode() in data] == []

    _run(env, tmp_path, "replicate", "replicate")
    _run(env, tmp_path, "nightly", "nightly")
    _run(env, tmp_path, "load", "load")
    _run(env, tmp_path, "status", "status")
    _run(env, tmp_path, "dicom-demo", "dicom", "demo", "--files-dir", str(tmp_path / "dicom-files"))
    _run(env, tmp_path, "dicom-status", "dicom", "status")
    _run(env, tmp_path, "dicom-bad-query", "dicom", "run", "--query", "no_such_view", expect=(1,))
    _run(env, tmp_path, "dicom-reset", "dicom", "reset", "--dataset", "dicom-reports", "--yes")
    _run(env, tmp_path, "blocks", "blocks", "setup", "--from-env", "--only", "opendental-source", expect=(0, 1))

    # Outputs, logs, artifacts, Prefect home (its database included), everything the runs wrote.
    assert list((tmp_path / "prefect-home").rglob("*.db")), "the runs used no Prefect home database"
    assert _files_with_token(tmp_path) == []
    assert _files_with_token(Path("/tmp"), since=started) == []
    assert _files_with_token(Path("/dev/shm"), since=started) == []
    for database in (pg, dicom_pg):
        assert TOKEN not in _pg_tables_text(database)
    state = mysql_query(replica, "SELECT * FROM _clinicflow_replication_state")
    assert state
    assert TOKEN not in repr(state)
