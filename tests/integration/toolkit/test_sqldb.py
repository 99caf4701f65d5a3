"""SQL extractor (MariaDB, PostgreSQL, streamed) and PostgreSQL loader (COPY insert, upsert) on the local servers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.toolkit.base import Batch, RunContext, ToolkitError
from clinicflow.toolkit.sqldb import PostgresLoader, SqlExtractor
from tests.conftest import mysql_exec


def pg_exec(server: PostgresServer, *statements: str) -> list[tuple]:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
            out = cur.fetchall() if cur.description else []
        conn.commit()
        return out
    finally:
        conn.close()


def test_mysql_extract_streams_in_batches_with_time_scope(make_mysql_db: Callable[[str], MySQLServer]) -> None:
    db = make_mysql_db("tk")
    mysql_exec(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY, at DATETIME, name VARCHAR(20))",
        "INSERT INTO t SELECT seq, '2026-01-01' + INTERVAL seq HOUR, CONCAT('n', seq) FROM seq_1_to_100",
    )
    ctx = RunContext(start=datetime(2026, 1, 1, 10), end=datetime(2026, 1, 2, 10))
    extractor = SqlExtractor(
        db, "SELECT id, name FROM t WHERE at >= %(start)s AND at < %(end)s ORDER BY id", dialect="mysql", batch_size=7
    )
    batches = list(extractor.extract(ctx))
    assert batches[0].columns == ("id", "name")
    assert [len(b) for b in batches] == [7, 7, 7, 3]
    assert [r[0] for b in batches for r in b.rows] == list(range(10, 34))
    # a query naming no parameter takes a literal % as it is
    like = SqlExtractor(db, "SELECT count(*) FROM t WHERE name LIKE 'n1%'", dialect="mysql")
    assert [b.rows for b in like.extract(ctx)] == [[(12,)]]


def test_postgres_extract_streams_in_batches(make_pg_db: Callable[[str], PostgresServer]) -> None:
    db = make_pg_db("tk")
    pg_exec(db, "CREATE TABLE t AS SELECT g AS id, 'n' || g AS name FROM generate_series(1, 50) g")
    extractor = SqlExtractor(
        db, "SELECT id, name FROM t WHERE id > %(low)s ORDER BY id", dialect="postgres", batch_size=20
    )
    gen = extractor.extract(RunContext(parameters={"low": 5}))
    first = next(gen)
    assert len(first) == 20
    assert first.rows[0] == (6, "n6")
    rest = list(gen)
    assert [len(b) for b in rest] == [20, 5]
    with pytest.raises(ToolkitError, match=r"SQL extract from postgresql://postgres@.*UndefinedTable"):
        list(SqlExtractor(db, "SELECT * FROM nope", dialect="postgres").extract(RunContext()))
    # A database that is not there: named with the connection (it came through as a raw driver error).
    gone = PostgresServer(host=db.host, port=db.port, username=db.username, database="no_such_database_tk")
    with pytest.raises(ToolkitError, match=r"SQL extract from postgresql://postgres@.*/no_such_database_tk failed"):
        list(SqlExtractor(gone, "SELECT 1", dialect="postgres").extract(RunContext()))


def test_postgres_loader_insert_and_upsert(make_pg_db: Callable[[str], PostgresServer]) -> None:
    db = make_pg_db("tk")
    create = "CREATE TABLE IF NOT EXISTS public.items (id int PRIMARY KEY, name text, note text, ok boolean)"
    rows = [(1, 'a "quoted", comma', None, True), (2, "", "x\ny", False)]
    loader = PostgresLoader(db, "items", create_sql=create)
    assert loader.load([Batch(("id", "name", "note", "ok"), rows)], RunContext()) == 2
    assert pg_exec(db, "SELECT id, name, note, ok FROM items ORDER BY id") == rows  # NULL vs '' kept apart
    upsert = PostgresLoader(db, "items", mode="upsert", key_columns=["id"])
    upsert.load([Batch(("id", "name"), [(2, "b"), (3, "c"), (2, "b2")])], RunContext())
    assert pg_exec(db, "SELECT id, name FROM items ORDER BY id") == [(1, 'a "quoted", comma'), (2, "b2"), (3, "c")]


def test_nested_api_records_load_as_json_and_lists_as_arrays_in_both_modes(
    make_pg_db: Callable[[str], PostgresServer],
) -> None:
    db = make_pg_db("tk")
    create = (
        "CREATE TABLE IF NOT EXISTS nested (id int PRIMARY KEY, patient jsonb, tags text[], visits jsonb, raw text)"
    )
    patient = {"mrn": "M1", "name": 'Zoë "Z"', "dob": None}
    visits = [{"at": "2026-11-02", "codes": ["K02.52"]}]
    tags = ["a", 'b "c"', "d\\e", None]
    columns = ("id", "patient", "tags", "visits", "raw")
    PostgresLoader(db, "nested", create_sql=create).load(
        [Batch(columns, [(1, patient, tags, visits, {"k": [1, 2]})])], RunContext()
    )
    PostgresLoader(db, "nested", mode="upsert", key_columns=["id"]).load(
        [Batch(columns, [(2, patient, tags, visits, {"k": [1, 2]})])], RunContext()
    )
    got = pg_exec(db, "SELECT patient, tags, visits, raw::jsonb FROM nested ORDER BY id")
    assert got == [(patient, tags, visits, {"k": [1, 2]})] * 2  # JSON text, never Python's repr


def test_every_value_in_a_json_column_is_json_an_empty_list_too_in_both_modes(
    make_pg_db: Callable[[str], PostgresServer],
) -> None:
    """An empty list into jsonb was `{}` (an ARRAY literal read as an object), a list of strings failed."""
    db = make_pg_db("tk")
    create = "CREATE TABLE IF NOT EXISTS pj (id int PRIMARY KEY, appointments jsonb, tags json, note jsonb)"
    columns = ("id", "appointments", "tags", "note")
    rows = [(1, [], ["asthma", "copd"], "plain text"), (2, [{"at": "2026-11-02"}], [], None)]
    PostgresLoader(db, "pj", create_sql=create).load([Batch(columns, rows)], RunContext())
    upserted = [(row[0] + 10, *row[1:]) for row in rows]
    PostgresLoader(db, "pj", mode="upsert", key_columns=["id"]).load([Batch(columns, upserted)], RunContext())
    got = pg_exec(db, "SELECT id, appointments, tags::jsonb, note FROM pj ORDER BY id")
    assert got == [*rows, *upserted]


def test_text_that_is_not_an_iso_date_never_reaches_a_date_column(make_pg_db: Callable[[str], PostgresServer]) -> None:
    """PostgreSQL reads `05.03.2024` by its DateStyle: 3 May under MDY, where the file meant 5 March."""
    db = make_pg_db("tk")
    create = "CREATE TABLE IF NOT EXISTS visits (id int PRIMARY KEY, seen date, at timestamptz)"
    good = Batch(("id", "seen", "at"), [(1, "2024-03-05", "2024-03-05T08:00:00+01:00"), (2, None, "2024-03-05 08:00")])
    PostgresLoader(db, "visits", create_sql=create).load([good], RunContext())
    bad = Batch(("id", "seen", "at"), [(3, "2024-03-06", None), (4, "05.03.2024", None)])
    with pytest.raises(ToolkitError, match=r"row 1, column 'seen': text that is not an ISO 8601 date") as caught:
        PostgresLoader(db, "visits").load([bad], RunContext())
    assert "05.03" not in str(caught.value)
    assert pg_exec(db, "SELECT id, seen::text FROM visits ORDER BY id") == [(1, "2024-03-05"), (2, None)]


def test_postgres_loader_failure_rolls_back_and_names_the_table(make_pg_db: Callable[[str], PostgresServer]) -> None:
    db = make_pg_db("tk")
    pg_exec(db, "CREATE TABLE items (id int PRIMARY KEY)")
    batches = [Batch(("id",), [(1,), (2,)]), Batch(("id",), [(2,)])]
    with pytest.raises(ToolkitError, match=r"postgres load into public.items .* failed after 2 rows: UniqueViolation"):
        PostgresLoader(db, "items").load(batches, RunContext())
    assert pg_exec(db, "SELECT count(*) FROM items") == [(0,)]
    with pytest.raises(ToolkitError, match=r"UndefinedTable.*the loader creates no table: give it a create_sql"):
        PostgresLoader(db, "visits").load(batches, RunContext())


def test_lenient_conversion_into_a_postgres_dead_letter_table(make_pg_db: Callable[[str], PostgresServer]) -> None:
    from clinicflow.toolkit.configs import built, transformer_of

    db = make_pg_db("tk")
    ctx = RunContext(pipeline="pl", connections=lambda dialect, name: db)
    config = transformer_of(
        {
            "kind": "types",
            "mapping": {"n": "int"},
            "strict": False,
            "dead_letters": {"kind": "postgres", "connection": "analytics", "schema": "public"},
        }
    )
    out = built(config, ctx).transform(Batch(("id", "n"), [("a", "1"), ("b", "x"), ("c", "y")]), ctx)
    assert out.rows == [("a", 1)]
    got = pg_exec(
        db,
        "SELECT pipeline, run_id, step, row_index, column_name, row_data->>'id' FROM toolkit_dead_letters ORDER BY id",
    )
    assert got == [
        ("pl", ctx.run_id, "type_conversion", 1, "n", "b"),
        ("pl", ctx.run_id, "type_conversion", 2, "n", "c"),
    ]
