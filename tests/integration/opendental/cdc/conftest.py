"""A second MariaDB with a row-based binlog, started once per test session (the main one on 3306 has none)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blocks.databases import MySQLServer
from tests.conftest import create_mysql_database, drop_mysql_databases, mysql_exec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def binlog_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MySQLServer]:
    """``mariadbd`` with log_bin, binlog_format=ROW, binlog_row_image=FULL on a free port; root, no password."""
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        pytest.fail("mariadbd and mariadb-install-db are needed (Debian package mariadb-server)")
    base = Path(tmp_path_factory.mktemp("binlog_mariadb"))
    datadir = base / "data"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    proc = subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--port={port}", "--bind-address=127.0.0.1",
         f"--socket={base / 'mysqld.sock'}", f"--pid-file={base / 'mysqld.pid'}", "--user=root",
         "--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-row-image=FULL", "--server-id=71",
         "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--local-infile=1",
         f"--log-error={base / 'error.log'}", f"--tmpdir={base}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = MySQLServer(host="127.0.0.1", port=port, username="root", database="")
    deadline = time.monotonic() + 60
    while True:
        try:
            mysql_exec(server, "SELECT 1")
            break
        except Exception as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the binlog MariaDB did not start: "
                                   + (base / "error.log").read_text()[-2000:]) from exc
            time.sleep(0.2)
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def make_binlog_db(binlog_mariadb: MySQLServer) -> Iterator[Callable[[str], MySQLServer]]:
    """Factory: an empty uniquely named database on the binlog MariaDB (dropped afterwards)."""
    created: list[MySQLServer] = []

    def make(prefix: str) -> MySQLServer:
        created.append(create_mysql_database(binlog_mariadb, prefix))
        return created[-1]

    yield make
    drop_mysql_databases(binlog_mariadb, [db.database for db in created])
