"""The MariaDB/MySQL command-line client as a fast reader of encoded rows.

Why: the copy paths have the MySQL server encode every row into one text
column, so the client only has to move bytes. pymysql, pure Python, still
parses each row's packet: ~3.9 µs of CPU per row, which on a 2-core machine
competes with the servers for the same cores (1M procedurelog rows: 3.9 s of
client CPU with pymysql, ~0.3 s with the C client writing ``--raw`` lines).

Which is used when: the C client (``mariadb`` on ``PATH``; the image installs
``mariadb-client``, which also speaks to MySQL servers) for streamed exports, unless
``CLINICFLOW_MYSQL_EXPORT=pymysql``; pymysql when no client is installed and
for everything else (planning, keyset pages that need the last key, LOAD DATA,
state). Both give the same bytes (tested).

The password goes to the client in a ``--defaults-extra-file`` readable by
the owner only, removed as soon as the client exits: never on the
command line (visible in ``ps``), never in a log or an exception message.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

from blocks.databases import MYSQL_SESSION_SQL_MODE
from clinicflow.retry import MYSQL_TRANSIENT_CODES, TransientError

EXPORT_ENV = "CLINICFLOW_MYSQL_EXPORT"  # "client" (default: when installed) | "pymysql"


class MySQLClientError(RuntimeError):
    """The client failed; the message is the client's own error line (never credentials)."""


def client_binary() -> str | None:
    """Path of the C client used for exports, or None when pymysql must be used."""
    if os.environ.get(EXPORT_ENV, "").strip().lower() == "pymysql":
        return None
    return shutil.which("mariadb")


def _option_value(value: str) -> str:
    # Option-file values in double quotes: backslash and quote escaped.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _defaults_file(server: Any) -> str:
    fd, path = tempfile.mkstemp(prefix="cf_my_", suffix=".cnf")  # created 0600
    with os.fdopen(fd, "w") as out:
        out.write("[client]\n")
        out.write(f"user={_option_value(server.username)}\n")
        out.write(f"password={_option_value(server.password.get_secret_value())}\n")
        if server.unix_socket:
            out.write(f"socket={_option_value(server.unix_socket)}\n")
        else:
            out.write(f"host={_option_value(server.host)}\nport={int(server.port)}\n")
    return path


def export_query(server: Any, sql: str, out: IO[bytes]) -> None:
    """Run ``sql`` (one column of encoded lines) and write each value plus a newline to ``out``.

    Same session settings as the pymysql connections (sql_mode, UTC time
    zone, utf8mb4, TLS when the server offers it). Raises
    :class:`~clinicflow.retry.TransientError` for lost or refused connections
    and :class:`MySQLClientError` for anything else.
    """
    binary = client_binary()
    if binary is None:
        raise MySQLClientError("no MariaDB/MySQL command-line client installed")
    defaults = _defaults_file(server)
    try:
        proc = subprocess.Popen(
            [binary, f"--defaults-extra-file={defaults}", "--batch", "--raw", "--skip-column-names", "--quick",
             "--ssl", "--default-character-set=utf8mb4", "--connect-timeout=20",
             f"--init-command=SET SESSION sql_mode='{MYSQL_SESSION_SQL_MODE}', SESSION time_zone='+00:00'",
             f"--database={server.database}", "--execute", sql],
            stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        _, err = proc.communicate()
    finally:
        Path(defaults).unlink(missing_ok=True)
    if proc.returncode != 0:
        # On a failed statement the client echoes the SQL between dashes; the
        # error itself is the line starting with "ERROR".
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")]
        first = (errors or lines or [f"exit code {proc.returncode}"])[0]
        match = re.match(r"ERROR (\d+)", first)
        if match and int(match.group(1)) in MYSQL_TRANSIENT_CODES:
            raise TransientError(f"mysql client: {first}")
        raise MySQLClientError(f"mysql client: {first}")
