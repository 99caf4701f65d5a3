"""The MariaDB/MySQL command-line client as a fast reader of encoded rows.

Why: the copy paths have the MySQL server encode every row into one text
column, so the client only has to move bytes. pymysql, pure Python, still
parses each row's packet in Python, CPU that competes with the servers for the
same cores; the C client writing ``--raw`` lines needs about a third of it
(figures: bench/results/notes-from-comments.md).

Which is used when: the C client (``mariadb`` on ``PATH``; the image installs
``mariadb-client``, which also speaks to MySQL servers) for streamed exports, unless
``CLINICFLOW_MYSQL_EXPORT=pymysql``; pymysql when no client is installed and
for everything else (planning, keyset pages that need the last key, LOAD DATA,
state). Both give the same bytes (tested).

The password goes to the client in an option file that has no name: a
memfd (an anonymous in-memory file, owner-only) passed to the child as
``--defaults-extra-file=/dev/fd/N``. Nothing is written to disk, so a
SIGKILL or OOM kill of either process cannot leave the password behind; the
file is gone with the last process holding it. Never on the command line
(visible in ``ps``), never in a log or an exception message. The child gets
only the environment it needs (no inherited ``CLINICFLOW_*`` secrets).
Passwords are written with the option-file escapes (quote, backslash,
newline, tab, carriage return); a NUL byte, which an option file cannot
hold, is refused with a clear error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from clinicflow.connectors.mysql.sessions import MYSQL_SESSION_SQL_MODE
from clinicflow.core import settings
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.retry import MYSQL_TRANSIENT_CODES, TransientError

EXPORT_ENV = "CLINICFLOW_MYSQL_EXPORT"  # "client" (default: when installed) | "pymysql"


class MySQLClientError(ClinicflowError):
    """The client failed; the message is the client's own error line (never credentials)."""


def client_binary() -> str | None:
    """Path of the C client used for exports, or None when pymysql must be used."""
    if settings.mysql_export() == "pymysql":
        return None
    if not hasattr(os, "memfd_create"):
        return None  # not Linux: no anonymous option file, so the password never goes to the client
    return shutil.which("mariadb")


# The escapes MariaDB's option-file reader understands inside a double-quoted value.
_OPTION_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b"}


def _option_value(value: str, field: str) -> str:
    """``value`` as a double-quoted option-file value; ``field`` names it in the error (never the value)."""
    if "\0" in value:
        raise MySQLClientError(
            f"mysql client: the {field} contains a NUL byte, which a MariaDB option file "
            "cannot hold; change it (pymysql, CLINICFLOW_MYSQL_EXPORT=pymysql, accepts it)"
        )
    return '"' + "".join(_OPTION_ESCAPES.get(ch, ch) for ch in value) + '"'


def _option_file_text(server: Any) -> str:
    lines = [
        "[client]",
        f"user={_option_value(server.username, 'user name')}",
        f"password={_option_value(server.password.get_secret_value(), 'password')}",
    ]
    if server.unix_socket:
        lines.append(f"socket={_option_value(server.unix_socket, 'socket path')}")
    else:
        lines += [f"host={_option_value(server.host, 'host')}", f"port={int(server.port)}"]
    return "\n".join(lines) + "\n"


def _option_fd(server: Any) -> int:
    """An anonymous owner-only file holding the client's options, positioned at its start."""
    fd = os.memfd_create("clinicflow-mysql-options", os.MFD_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)  # memfds start 0777; the client ignores world-writable option files
        os.write(fd, _option_file_text(server).encode("utf-8"))
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


# Variables the client (and stdbuf, which sets its own LD_PRELOAD) may see; nothing else is inherited.
CLIENT_ENV_NAMES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def _client_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in CLIENT_ENV_NAMES if name in os.environ}
    env.setdefault("PATH", os.defpath)
    # No HOME: the client must not read a ~/.my.cnf whose settings would override ours.
    return env


def inline_params(sql: str, params: Sequence[Any]) -> str:
    """``sql`` with its ``%s`` parameters as escaped literals, as pymysql sends them.

    The client takes no parameters.
    """
    import pymysql.converters

    if not params:
        return sql
    return sql % tuple(pymysql.converters.escape_item(p, "utf8mb4") for p in params)


# Large client output blocks and pipe: stdio's 4 KiB flushes wake the reader far too often (see docs/loading.md).
CLIENT_OUTPUT_BUFFER = "256K"
PIPE_BYTES = 1 << 20


def _command(binary: str, defaults: str, server: Any, sql: str, time_zone: str) -> list[str]:
    """``defaults``: the option file's path (``/dev/fd/N`` for the memfd)."""
    # Without stdbuf (not coreutils) the client runs as it is: only slower.
    stdbuf = shutil.which("stdbuf")
    prefix = [stdbuf, f"--output={CLIENT_OUTPUT_BUFFER}"] if stdbuf else []
    return [
        *prefix,
        binary,
        f"--defaults-extra-file={defaults}",
        "--batch",
        "--raw",
        "--skip-column-names",
        "--quick",
        "--ssl",
        "--default-character-set=utf8mb4",
        "--connect-timeout=20",
        f"--init-command=SET SESSION sql_mode='{MYSQL_SESSION_SQL_MODE}', SESSION time_zone={time_zone}",
        f"--database={server.database}",
        "--execute",
        sql,
    ]


def _widen_pipe(pipe: Any) -> None:
    """Grow the pipe to ``PIPE_BYTES`` (Linux; refused above /proc/sys/fs/pipe-max-size: then left as is)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), set_size, PIPE_BYTES)


def _raise_for_exit(returncode: int, stderr: bytes) -> None:
    if returncode == 0:
        return
    # On a failed statement the client echoes the SQL between dashes; the
    # error itself is the line starting with "ERROR".
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    first = (errors or lines or [f"exit code {returncode}"])[0]
    match = re.match(r"ERROR (\d+)", first)
    if match and int(match.group(1)) in MYSQL_TRANSIENT_CODES:
        raise TransientError(f"mysql client: {first}")
    raise MySQLClientError(f"mysql client: {first}")


class ClientExport:
    """A running export: ``stdout`` streams the lines; :meth:`finish` waits and raises on failure."""

    def __init__(self, proc: subprocess.Popen, stderr: IO[bytes]) -> None:  # type: ignore[type-arg]
        self._proc = proc
        self._stderr = stderr
        self.stdout: IO[bytes] = proc.stdout  # type: ignore[assignment]

    def finish(self) -> None:
        """Wait for the client; raise its error if it failed (after the last line was read)."""
        returncode = self._proc.wait()
        self._stderr.seek(0)
        _raise_for_exit(returncode, self._stderr.read(64 * 1024))

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


@contextlib.contextmanager
def open_export(server: Any, sql: str, *, time_zone: str = "'+00:00'") -> Iterator[ClientExport]:
    """Start the client on ``sql`` (one or more statements) with its output on a pipe.

    Same session settings as the pymysql connections (sql_mode, the given
    time zone expression, utf8mb4, TLS when the server offers it). The
    caller reads ``stdout`` to the end, then calls ``finish()``, which raises
    :class:`~clinicflow.core.retry.TransientError` for lost or refused connections
    and :class:`MySQLClientError` for anything else. Leaving the block early
    kills the client.
    """
    binary = client_binary()
    if binary is None:
        raise MySQLClientError("no MariaDB/MySQL command-line client installed")
    options = _option_fd(server)
    # stderr to a file, not a pipe: a long error message must never block the
    # client while we wait for its stdout.
    try:
        with tempfile.TemporaryFile() as stderr:
            proc = subprocess.Popen(
                _command(binary, f"/dev/fd/{options}", server, sql, time_zone),
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                pass_fds=(options,),
                env=_client_env(),
            )
            os.close(options)  # the child has its copy; ours is not needed any more
            options = -1
            _widen_pipe(proc.stdout)
            export = ClientExport(proc, stderr)
            try:
                yield export
            finally:
                export.abort()
                proc.stdout.close()  # type: ignore[union-attr]
    finally:
        if options >= 0:
            os.close(options)


def export_query(server: Any, sql: str, out: IO[bytes], *, time_zone: str = "'+00:00'") -> None:
    """Run ``sql`` (one column of encoded lines) and write each value plus a newline to ``out``."""
    with open_export(server, sql, time_zone=time_zone) as export:
        shutil.copyfileobj(export.stdout, out, 1 << 20)
        export.finish()
