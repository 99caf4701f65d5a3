"""A second MariaDB with a row-based binlog, started once per test session (the main one on 3306 has none)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blocks.databases import MySQLServer
from clinicflow_dev.binlog_server import binlog_mariadb as start_binlog_mariadb
from tests.conftest import create_mysql_database, drop_mysql_databases


@pytest.fixture(scope="session")
def binlog_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MySQLServer]:
    """``mariadbd`` with log_bin, binlog_format=ROW, binlog_row_image=FULL on a free port; root, no password."""
    with start_binlog_mariadb(Path(tmp_path_factory.mktemp("binlog_mariadb"))) as server:
        yield server


@pytest.fixture
def make_binlog_db(binlog_mariadb: MySQLServer) -> Iterator[Callable[[str], MySQLServer]]:
    """Factory: an empty uniquely named database on the binlog MariaDB (dropped afterwards)."""
    created: list[MySQLServer] = []

    def make(prefix: str) -> MySQLServer:
        created.append(create_mysql_database(binlog_mariadb, prefix))
        return created[-1]

    yield make
    drop_mysql_databases(binlog_mariadb, [db.database for db in created])
