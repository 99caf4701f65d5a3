"""raw_connection closes the connection it opened when the session's zone cannot be set (nobody else holds it)."""

from __future__ import annotations

from typing import Any

import pytest

from clinicflow.connectors.mysql.sessions import RAW_CONVERSIONS, raw_connected, raw_connection


class _Cursor:
    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str) -> None:
        raise OSError(f"lost connection during {sql}")


class _Conn:
    def __init__(self) -> None:
        self.closed = False

    def cursor(self) -> _Cursor:
        return _Cursor()

    def close(self) -> None:
        self.closed = True


class _Server:
    def __init__(self) -> None:
        self.opened: list[tuple[_Conn, dict[str, Any]]] = []

    def connect(self, **kwargs: Any) -> _Conn:
        conn = _Conn()
        self.opened.append((conn, kwargs))
        return conn


def test_a_failed_zone_setting_closes_the_new_connection() -> None:
    server = _Server()
    with pytest.raises(OSError, match="time_zone"):
        raw_connection(server, zone="server")  # type: ignore[arg-type]
    with pytest.raises(OSError, match="time_zone"), raw_connected(server, streaming=True, zone="server"):  # type: ignore[arg-type]
        pass
    assert [conn.closed for conn, _ in server.opened] == [True, True]
    assert server.opened[1][1] == {"streaming": True, "conv": RAW_CONVERSIONS, "autocommit": True}


def test_raw_connected_closes_on_exit_and_leaves_the_utc_session_alone() -> None:
    server = _Server()
    with raw_connected(server) as conn:  # type: ignore[arg-type]
        assert not conn.closed  # zone "utc": no statement run
    assert conn.closed
