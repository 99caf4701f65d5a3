"""The C client transport (clinicflow.connectors.mysql.client) against the real MariaDB: bytes, credentials, errors."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks.databases import MySQLServer
from clinicflow.connectors.mysql import client
from clinicflow.connectors.mysql.catalog import read_table
from clinicflow.connectors.mysql.sessions import raw_connection
from clinicflow.core.retry import TransientError, is_transient
from clinicflow.opendental.replication.replica_columns import replica_columns
from clinicflow.opendental.replication.replica_encoding import encoded_select_sql, stream_to_file

pytestmark = pytest.mark.skipif(client.client_binary() is None, reason="mariadb client not installed")

# A password with every character an option file or a shell could trip on.
TRICKY_PASSWORD = "p\"a\\ss w#o;r$d'`"


@pytest.fixture
def db_with_user(make_mysql_db: Callable[[str], MySQLServer]) -> MySQLServer:
    server = make_mysql_db("cli")
    user = "cf_cli_" + server.database[-8:]  # one user per test: parallel runs never drop each other's
    conn = raw_connection(server)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id bigint NOT NULL PRIMARY KEY, s varchar(20) NULL, b blob NULL, d date NOT NULL)")
        cur.execute(
            "INSERT INTO t VALUES (1, 'a\\tb\\nc\\\\', X'00FF0A09', '0000-00-00'),"
            " (2, NULL, NULL, '0001-01-01'), (3, '', '', '2024-02-29')"
        )
        cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (TRICKY_PASSWORD,))
        cur.execute(f"GRANT SELECT ON `{server.database}`.* TO '{user}'@'%'")
    conn.close()
    yield server.model_copy(
        update={"username": user, "password": SecretStr(TRICKY_PASSWORD), "host": "127.0.0.1", "unix_socket": None}
    )
    conn = raw_connection(server)
    with conn.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
    conn.close()


def test_client_gives_the_same_bytes_as_pymysql(db_with_user: MySQLServer) -> None:
    conn = raw_connection(db_with_user)
    sql = encoded_select_sql("t", replica_columns(read_table(conn, "t"))) + " ORDER BY id"
    conn.close()
    with tempfile.NamedTemporaryFile() as f:
        client.export_query(db_with_user, sql, f)
        f.flush()
        client_bytes = Path(f.name).read_bytes()
    stream = raw_connection(db_with_user, streaming=True)
    with tempfile.NamedTemporaryFile() as f:
        stream_to_file(stream, sql, [], f.name, 0)
        pymysql_bytes = Path(f.name).read_bytes()
    stream.close()
    assert client_bytes == pymysql_bytes
    assert client_bytes.count(b"\n") == 3
    assert b"\\N" in client_bytes
    assert b"\\0" in client_bytes


def test_large_export_through_the_buffered_client_and_wide_pipe_equals_pymysql(db_with_user: MySQLServer) -> None:
    """Several MB through stdbuf's 256 KiB blocks and the 1 MiB pipe: every byte as pymysql reads it."""
    sql = (
        "SELECT CONCAT_WS(X'09', seq, REPEAT(CHAR(65 + MOD(seq, 26)), MOD(seq, 300)),"
        " IF(MOD(seq, 7) = 0, X'5C4E', seq * 3)) FROM seq_1_to_40000"
    )
    with client.open_export(db_with_user, sql) as export:
        if hasattr(fcntl, "F_GETPIPE_SZ"):
            assert fcntl.fcntl(export.stdout.fileno(), fcntl.F_GETPIPE_SZ) == client.PIPE_BYTES
        client_bytes = export.stdout.read()
        export.finish()
    stream = raw_connection(db_with_user, streaming=True)
    with tempfile.NamedTemporaryFile() as f:
        stream_to_file(stream, sql, [], f.name, 0)
        pymysql_bytes = Path(f.name).read_bytes()
    stream.close()
    assert len(client_bytes) > 5_000_000
    assert client_bytes == pymysql_bytes


def test_no_credentials_file_is_written(db_with_user: MySQLServer, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    credentials_dir = tmp_path / "tmp"
    credentials_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(credentials_dir))
    with open(tmp_path / "out", "wb") as f:
        client.export_query(db_with_user, "SELECT 1", f)
    with open(tmp_path / "out", "wb") as f, pytest.raises(client.MySQLClientError):
        client.export_query(db_with_user, "SELECT nope", f)
    assert os.listdir(credentials_dir) == []


def test_the_client_sees_only_an_anonymous_option_file_and_no_inherited_secrets(
    db_with_user: MySQLServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PASSWORD", "env-sentinel-7f3a")
    monkeypatch.setenv("MYSQL_PWD", "env-sentinel-7f3a")
    with client.open_export(db_with_user, "SELECT SLEEP(1.5)") as export:
        pid = export._proc.pid
        deadline = time.monotonic() + 10
        while b"mariadb" not in Path(f"/proc/{pid}/cmdline").read_bytes():  # stdbuf execs the client
            assert time.monotonic() < deadline
            time.sleep(0.01)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        fds = set()
        for n in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(FileNotFoundError):  # closed by the client between the listing and here
                fds.add(os.readlink(f"/proc/{pid}/fd/{n}"))
        export.stdout.read()
        export.finish()
    assert b"env-sentinel-7f3a" not in environ
    assert b"MYSQL_PWD" not in environ
    assert b"CLINICFLOW" not in environ
    assert TRICKY_PASSWORD.encode() not in environ
    assert TRICKY_PASSWORD.encode() not in cmdline
    assert b"--defaults-extra-file=/dev/fd/" in cmdline
    assert any(target.startswith("/memfd:clinicflow-mysql-options") for target in fds), fds
    assert not any(target.endswith(".cnf") for target in fds)


@pytest.mark.parametrize(
    "password",
    [
        "line1\nline2",
        "quote\"and'single",
        "back\\slash\\",
        "hash#not-a-comment",
        " spaces around ",
        "tab\there\rcr",
        "semi;colon=equals[section]",
        "ünï©ødé",
        "\\n-literal-backslash-n",
    ],
)
def test_passwords_with_option_file_specials_work(db_with_user: MySQLServer, password: str) -> None:
    admin = raw_connection(db_with_user.model_copy(update={"username": "root", "password": SecretStr("")}))
    with admin.cursor() as cur:
        cur.execute(f"ALTER USER '{db_with_user.username}'@'%%' IDENTIFIED BY %s", (password,))
    admin.close()
    server = db_with_user.model_copy(update={"password": SecretStr(password)})
    with tempfile.TemporaryFile() as f:
        client.export_query(server, "SELECT CURRENT_USER()", f)
        f.seek(0)
        assert f.read() == f"{db_with_user.username}@%\n".encode()


def test_a_nul_in_the_password_is_refused_clearly(db_with_user: MySQLServer) -> None:
    server = db_with_user.model_copy(update={"password": SecretStr("before\0after")})
    with tempfile.TemporaryFile() as f, pytest.raises(client.MySQLClientError) as info:
        client.export_query(server, "SELECT 1", f)
    assert "password contains a NUL byte" in str(info.value)
    assert "before" not in str(info.value)


def test_sql_error_is_permanent_and_named(db_with_user: MySQLServer) -> None:
    with tempfile.TemporaryFile() as f, pytest.raises(client.MySQLClientError) as info:
        client.export_query(db_with_user, "SELECT nope FROM t", f)
    assert "Unknown column 'nope'" in str(info.value)
    assert not is_transient(info.value)


def test_wrong_password_never_shows_it(db_with_user: MySQLServer) -> None:
    wrong = db_with_user.model_copy(update={"password": SecretStr("fake-sentinel-not-a-credential-4")})
    with tempfile.TemporaryFile() as f, pytest.raises(client.MySQLClientError) as info:
        client.export_query(wrong, "SELECT 1", f)
    assert "Access denied" in str(info.value)
    assert "fake-sentinel-not-a-credential-4" not in str(info.value)


def test_unreachable_server_is_transient(db_with_user: MySQLServer) -> None:
    gone = db_with_user.model_copy(update={"port": 1})  # nothing listens on port 1
    with tempfile.TemporaryFile() as f, pytest.raises(TransientError) as info:
        client.export_query(gone, "SELECT 1", f)
    assert is_transient(info.value)
    assert TRICKY_PASSWORD not in str(info.value)
