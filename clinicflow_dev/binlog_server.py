"""A throw-away MariaDB with a row-based binlog (tests and benches: the local server on 3306 has no binlog)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from blocks.databases import MySQLServer, PostgresServer


def cli_env(src: MySQLServer, replica: MySQLServer, pg: PostgresServer, tables_file: Path) -> dict[str, str]:
    """The environment of a ``clinicflow`` subprocess whose blocks are these servers (no Prefect API)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "CLINICFLOW_"))}
    env.update({"CLINICFLOW_CREDENTIALS": "env", "CLINICFLOW_TABLES_FILE": str(tables_file)})
    for block, server in (("OPENDENTAL_SOURCE", src), ("OPENDENTAL_REPLICATION", replica), ("ANALYTICS_POSTGRES", pg)):
        env.update(
            {
                f"CLINICFLOW_{block}_HOST": server.host,
                f"CLINICFLOW_{block}_PORT": str(server.port),
                f"CLINICFLOW_{block}_USER": server.username,
                f"CLINICFLOW_{block}_DATABASE": server.database,
            }
        )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def binlog_mariadb(base: Path, *, server_id: int = 71, buffer_pool: str = "64M") -> Iterator[MySQLServer]:
    """``mariadbd`` with log_bin, binlog_format=ROW, binlog_row_image=FULL in ``base``, on a free port.

    Yields a root block (no password, no database selected); the server is stopped on exit.
    """
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        raise RuntimeError("mariadbd and mariadb-install-db are needed (Debian package mariadb-server)")
    datadir = base / "data"
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={datadir}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={base / 'mysqld.sock'}",
            f"--pid-file={base / 'mysqld.pid'}",
            "--user=root",
            "--log-bin=mysql-bin",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            f"--server-id={server_id}",
            "--skip-name-resolve",
            f"--innodb-buffer-pool-size={buffer_pool}",
            "--local-infile=1",
            f"--log-error={base / 'error.log'}",
            f"--tmpdir={base}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = MySQLServer(host="127.0.0.1", port=port, username="root", database="")
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                conn = server.connect(autocommit=True)
                conn.close()
                break
            except Exception as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the binlog MariaDB did not start: " + (base / "error.log").read_text()[-2000:]
                    ) from exc
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
