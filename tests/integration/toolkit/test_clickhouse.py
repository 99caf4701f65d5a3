"""ClickHouse extractor and loader on a real engine (chDB through clickhouse-connect's chdb:// interface)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from clinicflow.connectors.connections import connected
from clinicflow.toolkit.base import Batch, RunContext, ToolkitError
from clinicflow.toolkit.clickhouse import ClickHouseConnection, ClickHouseExtractor, ClickHouseLoader

CTX = RunContext()


def conn(ch_database: tuple[str, str]) -> ClickHouseConnection:
    url, database = ch_database
    return ClickHouseConnection(url=SecretStr(url), database=database)


def rows(connection: ClickHouseConnection, sql: str) -> list[tuple]:
    with connected(connection) as client:
        return [tuple(r) for r in client.query(sql).result_rows]


def stream(n: int, start: int = 0, label: str = "v1") -> list[Batch]:
    data = [(i, f"{label}-{i}") for i in range(start, start + n)]
    return [Batch(("id", "name"), data[i : i + 7]) for i in range(0, len(data), 7)]


def test_insert_in_batches_then_extract_in_blocks(ch_database: tuple[str, str]) -> None:
    c = conn(ch_database)
    loader = ClickHouseLoader(
        c,
        "items",
        batch_size=10,
        create_sql=f"CREATE TABLE IF NOT EXISTS {c.database}.items (id Int64, name String) "
        "ENGINE = MergeTree ORDER BY id",
    )
    assert loader.load(stream(25), CTX) == 25
    # batch_size 10 over batches of 7: three inserts, three parts
    assert (
        rows(c, f"SELECT count() FROM system.parts WHERE database = '{c.database}' AND table = 'items' AND active")[0][
            0
        ]
        == 3
    )
    ctx = RunContext(parameters={"low": 5})
    extracted = list(
        ClickHouseExtractor(c, "SELECT id, name FROM items WHERE id >= %(low)s ORDER BY id", batch_size=8).extract(ctx)
    )
    assert extracted[0].columns == ("id", "name")
    assert all(len(b) <= 8 for b in extracted)
    assert [r for b in extracted for r in b.rows] == [(i, f"v1-{i}") for i in range(5, 25)]


def test_upsert_replacing_merge_tree_keeps_the_newest_version(ch_database: tuple[str, str]) -> None:
    c = conn(ch_database)
    create = (
        f"CREATE TABLE IF NOT EXISTS {c.database}.r (id Int64, name String, _version UInt64) "
        "ENGINE = ReplacingMergeTree(_version) ORDER BY id"
    )
    loader = ClickHouseLoader(c, "r", mode="upsert", upsert_strategy="replacing", create_sql=create)
    loader.load(stream(10), CTX)
    loader.load(stream(5, start=8, label="v2"), CTX)
    got = rows(c, "SELECT id, name FROM r FINAL ORDER BY id")
    assert got == [(i, f"v1-{i}") for i in range(8)] + [(i, f"v2-{i}") for i in range(8, 13)]


def test_upsert_delete_insert_replaces_the_key_set(ch_database: tuple[str, str]) -> None:
    c = conn(ch_database)
    create = (
        f"CREATE TABLE IF NOT EXISTS {c.database}.d (id Int64, day String, name String) "
        "ENGINE = MergeTree ORDER BY (id, day)"
    )
    loader = ClickHouseLoader(
        c, "d", mode="upsert", upsert_strategy="delete_insert", key_columns=["id", "day"], create_sql=create
    )
    first = [Batch(("id", "day", "name"), [(1, "a", "old"), (1, "b", "old"), (2, "a", "old")])]
    second = [Batch(("id", "day", "name"), [(1, "b", "new"), (3, "a", "new")])]
    loader.load(first, CTX)
    loader.load(second, CTX)
    assert rows(c, "SELECT id, day, name FROM d ORDER BY id, day") == [
        (1, "a", "old"),
        (1, "b", "new"),
        (2, "a", "old"),
        (3, "a", "new"),
    ]


def test_errors_name_the_table_and_never_the_password(ch_database: tuple[str, str]) -> None:
    c = conn(ch_database)
    with pytest.raises(
        ToolkitError, match=r"load into missing on chdb://.*the loader creates no table: give it a create_sql"
    ):
        ClickHouseLoader(c, "missing").load(stream(3), CTX)
    with pytest.raises(ToolkitError, match="delete_insert upsert needs key_columns"):
        ClickHouseLoader(c, "x", mode="upsert", upsert_strategy="delete_insert")
    server = ClickHouseConnection(
        url=SecretStr("http://admin:fake-sentinel-not-a-credential-12@127.0.0.1:1/"), database="db"
    )
    assert "fake-sentinel-not-a-credential-12" not in server.describe()
    assert "admin" not in server.describe()
    with pytest.raises(ToolkitError) as err:
        list(ClickHouseExtractor(server, "SELECT 1").extract(CTX))
    assert "fake-sentinel-not-a-credential-12" not in str(err.value)


def test_a_failure_after_some_batches_says_the_rows_already_inserted_stay(ch_database: tuple[str, str]) -> None:
    """ClickHouse has no transaction: a strict `types` failing at row 15 left 10 rows, and the message said none."""
    c = conn(ch_database)
    create = f"CREATE TABLE IF NOT EXISTS {c.database}.part (id Int64, name String) ENGINE = MergeTree ORDER BY id"

    def failing() -> object:
        yield from stream(14)
        raise ToolkitError("types: row 14, column 'id': cannot convert to int (ValueError)")

    with pytest.raises(ToolkitError, match=r"row 14.*the 10 rows inserted into part before the failure stay"):
        ClickHouseLoader(c, "part", batch_size=5, create_sql=create).load(failing(), CTX)  # type: ignore[arg-type]
    assert rows(c, f"SELECT count() FROM {c.database}.part") == [(10,)]
