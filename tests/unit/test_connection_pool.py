"""clinicflow.connectors.postgres.pool.ConnectionPool with fake connections (the real ones: tests/integration/
processing/test_submit.py)."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

from clinicflow.connectors.postgres import pool as pool_module
from clinicflow.connectors.postgres.pool import ConnectionPool

IDLE, IN_ERROR, UNKNOWN = 0, 3, 4


class FakeConnection:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = 0
        self.status = IDLE
        self.rollbacks = 0
        self.rollback_fails = False

    def rollback(self) -> None:
        if self.rollback_fails:
            raise RuntimeError("server gone")
        self.rollbacks += 1
        self.status = IDLE

    def get_transaction_status(self) -> int:
        return self.status

    def close(self) -> None:
        self.closed = 1


class Server:
    def __init__(self) -> None:
        self.opened: list[FakeConnection] = []
        self._numbers = itertools.count(1)
        self.lock = threading.Lock()

    def connect(self) -> FakeConnection:
        with self.lock:
            conn = FakeConnection(next(self._numbers))
            self.opened.append(conn)
        return conn


def test_a_returned_connection_is_rolled_back_and_lent_again() -> None:
    server = Server()
    pool = ConnectionPool(server.connect, size=2)
    with pool.connection() as conn:
        conn.status = 2  # in a transaction
    assert conn.rollbacks == 1
    with pool.connection() as again:
        assert again is conn
    lent = pool.connect()
    assert lent.number == conn.number
    lent.close()
    lent.close()  # twice: handed back once
    assert pool.connect().number == conn.number
    assert pool.connect().number != conn.number  # the one kept was lent above: a new one
    assert len(server.opened) == 2


def test_the_block_exception_propagates_and_the_connection_is_kept() -> None:
    server = Server()
    pool = ConnectionPool(server.connect, size=1)

    def fail(conn: FakeConnection) -> None:
        conn.status = IN_ERROR
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError), pool.connection() as conn:
        fail(conn)
    assert conn.rollbacks == 1
    with pool.connection() as again:
        assert again is conn


def test_broken_and_closed_connections_are_dropped() -> None:
    server = Server()
    pool = ConnectionPool(server.connect, size=3)
    with pool.connection() as closed:
        closed.closed = 2  # the server dropped it
    with pool.connection() as unknown:
        unknown.rollback_fails = True  # open to the client, but the server is gone
        unknown.status = UNKNOWN
    assert unknown.closed
    lent = pool.connect()
    lent._conn.closed = 2
    assert lent.closed
    lent.close()
    with pool.connection() as fresh:
        assert fresh not in (closed, unknown, lent)
    assert len(server.opened) == 4


def test_at_most_keep_connections_are_kept() -> None:
    server = Server()
    pool = ConnectionPool(server.connect, keep=2)
    lent = [pool.connect() for _ in range(5)]  # unbounded: five at once
    raw = [c._conn for c in lent]
    for conn in lent:
        conn.close()
    assert [c.closed for c in raw] == [0, 0, 1, 1, 1]
    pool.close()
    assert all(c.closed for c in raw)
    assert pool.connect().number == 6  # nothing kept after close()


def test_a_connection_idle_too_long_is_closed_not_lent(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(pool_module.time, "monotonic", lambda: now[0])
    server = Server()
    pool = ConnectionPool(server.connect, size=2, max_idle_seconds=60)
    first, second = pool.connect(), pool.connect()
    first_raw = first._conn
    first.close()
    now[0] += 30
    second_raw = second._conn
    second.close()
    now[0] += 40  # first idle 70 s, second 40 s
    with pool.connection() as conn:
        assert conn is second_raw
    assert first_raw.closed  # the stale one is closed, not kept
    now[0] += 61
    with pool.connection() as conn:
        assert conn is not second_raw
    assert second_raw.closed


def test_a_bounded_pool_makes_the_next_caller_wait_for_a_free_connection() -> None:
    server = Server()
    pool = ConnectionPool(server.connect, size=2)
    first, second = pool.connect(), pool.connect()
    got: list[Any] = []
    waiting = threading.Thread(target=lambda: got.append(pool.connect()))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()
    assert not got
    second_raw = second._conn
    second.close()
    waiting.join(5)
    assert not waiting.is_alive()
    assert got[0]._conn is second_raw
    assert len(server.opened) == 2
    first.close()
    got[0].close()


def test_concurrent_blocks_never_hold_more_than_size_connections() -> None:
    server = Server()
    pool = ConnectionPool(server.connect, size=3)
    lock = threading.Lock()
    inside = [0, 0]  # now, most

    def use() -> None:
        for _ in range(50):
            with pool.connection():
                with lock:
                    inside[0] += 1
                    inside[1] = max(inside[1], inside[0])
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert inside == [0, inside[1]]
    assert 1 <= inside[1] <= 3
    assert len(server.opened) <= 3


def test_a_failed_connect_frees_its_slot() -> None:
    calls = [0]
    server = Server()

    def connect() -> FakeConnection:
        calls[0] += 1
        if calls[0] == 1:
            raise OSError("refused")
        return server.connect()

    pool = ConnectionPool(connect, size=1)
    with pytest.raises(OSError, match="refused"):
        pool.connect()
    with pool.connection() as conn:
        assert conn.number == 1


def test_a_pool_needs_a_size_of_one_or_more() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionPool(Server().connect, size=0)
