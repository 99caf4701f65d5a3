"""Values of 16, 64 and 200 MB (LONGBLOB, LONGTEXT, every byte value) arrive byte-identical in the replica and raw.

One module, three rows. The values are built by the server (REPEAT) and compared by hashes the servers
compute (SHA2 / sha256), so the test process never holds more than the copy itself does. The test raises
the local MariaDB's GLOBAL max_allowed_packet to 1 GB (a server must be able to send a row to copy it) and
restores it (to build the values); the incremental night then runs at the usual limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental.replication import replica_copy
from clinicflow.opendental.tables.config import ExtractionStrategy, TableConfig
from clinicflow.opendental.warehouse import load_steps
from tests.conftest import local_mysql_admin, mysql_exec, mysql_query
from tests.integration.opendental.warehouse.conftest import pg_query

MB = 1 << 20
SIZES = {1: 16 * MB, 2: 64 * MB, 3: 200 * MB}
EVERY_BYTE = bytes(range(256))
# Text with every escape the copies handle (tab, newline, CR, backslash) and multibyte characters.
TEXT_UNIT = "a\tb\nc\rd\\e é ✓ 𝄞 NUL-free \u00ff|".encode()
CONFIG = TableConfig(
    primary_key=["Id"], batch_size=2, extraction_strategy=ExtractionStrategy.incremental, incremental_columns=["Stamp"]
)


@pytest.fixture
def big_packets() -> Iterator[int]:
    admin = local_mysql_admin()
    old = int(mysql_query(admin, "SELECT @@GLOBAL.max_allowed_packet")[0][0])
    mysql_exec(admin, "SET GLOBAL max_allowed_packet = 1073741824")
    try:
        yield old
    finally:
        mysql_exec(admin, f"SET GLOBAL max_allowed_packet = {old}")


def _repeat_sql(unit: bytes, size: int) -> str:
    return f"LEFT(REPEAT(X'{unit.hex()}', {size // len(unit) + 1}), {size})"


def _expected(unit: bytes, size: int) -> str:
    return hashlib.sha256((unit * (size // len(unit) + 1))[:size]).hexdigest()


def _check(source: MySQLServer, replica: MySQLServer, pg: PostgresServer, *, first: bool) -> None:
    sql = "SELECT Id, SHA2(Body, 256), SHA2(Txt, 256), LENGTH(Body), LENGTH(Txt) FROM docs ORDER BY Id"
    src = mysql_query(source, sql)
    assert mysql_query(replica, sql) == src
    raw = pg_query(
        pg,
        'SELECT "Id", encode(sha256("Body"), \'hex\'), encode(sha256(convert_to("Txt", \'UTF8\')), '
        '\'hex\'), length("Body"), octet_length("Txt") FROM raw.docs ORDER BY 1',
    )
    assert [tuple(r) for r in raw] == [(i, _decode(b), _decode(t), lb, lt) for i, b, t, lb, lt in src]
    for key, size in SIZES.items() if first else ():
        row = next(r for r in src if r[0] == key)
        assert row[3] == size
        assert _decode(row[1]) == _expected(EVERY_BYTE, size)


def _decode(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) else None if value is None else str(value)


@pytest.mark.slow
def test_large_values_byte_identical_in_replica_and_raw(
    big_packets: int, make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]
) -> None:
    source, replica, pg = make_mysql_db("bigsrc"), make_mysql_db("bigrep"), make_pg_db("bigpg")
    mysql_exec(
        source,
        "CREATE TABLE docs (Id bigint NOT NULL PRIMARY KEY, Body longblob NULL, "
        "Txt longtext CHARACTER SET utf8mb4 NULL, Small mediumblob NULL, "
        "Stamp datetime NOT NULL) ENGINE=InnoDB",
    )
    for key, size in SIZES.items():
        text = f"CONVERT(REPEAT(X'{TEXT_UNIT.hex()}', {size // len(TEXT_UNIT)}) USING utf8mb4)"
        mysql_exec(
            source,
            f"INSERT INTO docs VALUES ({key}, {_repeat_sql(EVERY_BYTE, size)}, {text}, NULL, "
            f"'2024-01-0{key} 00:00:00')",
        )
    mysql_exec(
        source,
        "INSERT INTO docs VALUES (4, '', '', X'00095C0A', '2024-01-04 00:00:00'), "
        "(5, NULL, NULL, NULL, '2024-01-05 00:00:00')",
    )
    load_steps.setup_target(pg)
    replica_copy.replicate_table_once(source, replica, "docs", CONFIG, full_refresh=True)
    outcome = load_steps.load_table_once(replica, pg, "docs", CONFIG)
    assert outcome.status == "ok", outcome.error
    _check(source, replica, pg, first=True)
    small = pg_query(pg, 'SELECT "Id", "Small", "Body" IS NULL FROM raw.docs WHERE "Id" IN (4, 5) ORDER BY 1')
    assert [(r[0], None if r[1] is None else bytes(r[1]), r[2]) for r in small] == [
        (4, b"\x00\t\\\n", False),
        (5, None, True),
    ]

    # An incremental night, with the server back at its usual limit (16 MB here): the changed 64 MB value and a
    # small one go through the incremental and merge paths whole (nothing depends on max_allowed_packet).
    mysql_exec(
        source,
        "UPDATE docs SET Body = CONCAT(Body, X'00FF'), Stamp = '2024-02-01 00:00:00' WHERE Id = 2",
        "UPDATE docs SET Small = X'5C00', Stamp = '2024-02-02 00:00:00' WHERE Id = 4",
    )
    mysql_exec(local_mysql_admin(), f"SET GLOBAL max_allowed_packet = {big_packets}")
    replica_copy.replicate_table_once(source, replica, "docs", CONFIG)
    outcome = load_steps.load_table_once(replica, pg, "docs", CONFIG)
    assert outcome.status == "ok", outcome.error
    _check(source, replica, pg, first=False)
    assert bytes(pg_query(pg, 'SELECT "Small" FROM raw.docs WHERE "Id" = 4')[0][0]) == b"\\\x00"
