"""``with connected(server) as conn`` and ``with transaction(server) as conn``: the one way to hold a connection.

``server`` is anything with ``connect(**kwargs)`` (the MySQL and PostgreSQL blocks, the Protocols in
:mod:`clinicflow.connectors.protocols`) or a plain zero-argument ``connect`` callable. The connection is
closed on the way out, whatever happens; :func:`transaction` also commits when the block ends normally
and rolls back when it raises (the block's exception is the one that propagates). A raw MySQL session (server
bytes, autocommit) is held the same way, by :func:`clinicflow.connectors.mysql.sessions.raw_connected`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def connected(server: Any | Callable[[], Any], **kwargs: Any) -> Iterator[Any]:
    """A new connection from ``server.connect(**kwargs)`` (or ``server()``), closed on exit."""
    connect = getattr(server, "connect", server)
    conn = connect(**kwargs)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def transaction(server: Any | Callable[[], Any], **kwargs: Any) -> Iterator[Any]:
    """:func:`connected`, committed when the block ends normally, rolled back when it raises."""
    with connected(server, **kwargs) as conn:
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection cannot roll back; the cause matters
                conn.rollback()
            raise
        conn.commit()
