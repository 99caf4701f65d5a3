"""Bench: the pipeline toolkit's ClickHouse loader and its PostgreSQL -> ClickHouse pipeline, on chDB.

In one run, each case in a child process (so its peak RSS is its own), on
the same rows (id, clinic, day, fee, note):

* **loader**: ``ClickHouseLoader`` (batch_size 100,000, column-oriented
  inserts) fed a stream of 10,000-row batches;
* **plain insert loop** (the anchor): the obvious clickhouse-connect code,
  ``client.insert(table, rows, column_names=...)`` for each 10,000-row batch
  as it arrives;
* **pipeline**: ``etl`` of ``SqlExtractor`` (PostgreSQL named cursor, 50,000
  rows a fetch) -> ``ClickHouseLoader``, run through the toolkit's executor;
* **plain script** (its anchor): ``cursor.execute``/``fetchall`` on a
  client-side psycopg2 cursor, then one ``client.insert``.

Prints rows/s and the ratios (toolkit / anchor), and peak RSS of the loader
and the pipeline at ``--rows`` and ``--big-rows`` (memory must not grow with
the row count). The rounds interleave, because this machine is shared.

    uv run --frozen python -m bench.bench_toolkit [--rows 1000000] [--big-rows 3000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from pydantic import SecretStr

SOURCE_BATCH = 10_000
CREATE = (
    "CREATE TABLE {table} (id Int64, clinic Int64, day Date, fee Float64, note String) ENGINE = MergeTree ORDER BY id"
)


def source_batches(rows: int) -> Iterator[Any]:
    from clinicflow.toolkit.base import Batch

    base = date(2020, 1, 1)
    columns = ("id", "clinic", "day", "fee", "note")
    for start in range(0, rows, SOURCE_BATCH):
        yield Batch(
            columns,
            [
                (i, i % 17, base + timedelta(days=i % 1500), (i % 997) * 1.25, f"procedure note {i % 5003}")
                for i in range(start, min(rows, start + SOURCE_BATCH))
            ],
        )


def pg_server() -> Any:
    from blocks.databases import PostgresServer

    return PostgresServer(
        host=os.environ.get("CLINICFLOW_TEST_PG_HOST", "127.0.0.1"), port=5432, username="postgres", database="postgres"
    )


def prepare_pg(rows: int) -> str:
    from clinicflow_dev.admin import admin_pg

    server = pg_server()
    name = f"cf_bench_toolkit_{uuid.uuid4().hex[:8]}"
    admin_pg(server, f"CREATE DATABASE {name}")
    conn = server.connect(database=name)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE procs AS SELECT g::bigint AS id, (g %% 17)::bigint AS clinic, "
            "date '2020-01-01' + (g %% 1500) AS day, ((g %% 997) * 1.25)::float8 AS fee, "
            "'procedure note ' || (g %% 5003) AS note FROM generate_series(0, %s - 1) g",
            (rows,),
        )
    conn.commit()
    conn.close()
    return name


def run_case(case: str, rows: int, chdb_dir: str, pg_database: str | None) -> dict[str, Any]:
    """One measurement in this (child) process."""
    import clickhouse_connect

    from clinicflow.toolkit.base import RunContext
    from clinicflow.toolkit.clickhouse import ClickHouseConnection, ClickHouseLoader
    from clinicflow.toolkit.compose import etl, execute
    from clinicflow.toolkit.sqldb import SqlExtractor

    url = f"chdb://{chdb_dir}"
    table = f"t_{case}_{uuid.uuid4().hex[:6]}"
    client = clickhouse_connect.get_client(dsn=url)
    client.command(CREATE.format(table=table))
    connection = ClickHouseConnection(url=SecretStr(url), database="default")
    ctx = RunContext()
    started = time.perf_counter()
    if case == "loader":
        written = ClickHouseLoader(connection, table, batch_size=100_000).load(source_batches(rows), ctx)
    elif case == "plain_insert":
        written = 0
        for batch in source_batches(rows):
            client.insert(table, batch.rows, column_names=list(batch.columns))
            written += len(batch)
    elif case == "pipeline":
        server = pg_server().model_copy(update={"database": pg_database})
        leaf = etl(
            "pg_to_ch",
            extract=SqlExtractor(
                server, "SELECT id, clinic, day, fee, note FROM procs", dialect="postgres", batch_size=50_000
            ),
            load=ClickHouseLoader(connection, table, batch_size=100_000),
        )
        (outcome,) = execute(leaf, ctx)
        if outcome.status != "completed":
            raise RuntimeError(outcome.error)
        written = outcome.result.rows_written
    elif case == "plain_script":
        conn = pg_server().connect(database=pg_database)
        with conn.cursor() as cur:
            cur.execute("SELECT id, clinic, day, fee, note FROM procs")
            data = cur.fetchall()
        conn.close()
        client.insert(table, data, column_names=["id", "clinic", "day", "fee", "note"])
        written = len(data)
    else:
        raise ValueError(case)
    seconds = time.perf_counter() - started
    count = client.query(f"SELECT count() FROM {table}").result_rows[0][0]
    client.command(f"DROP TABLE {table}")
    if count != rows or written != rows:
        raise RuntimeError(f"{case}: wrote {written}, table has {count}, expected {rows}")
    return {
        "case": case,
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(case: str, rows: int, chdb_dir: str, pg_database: str | None) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.bench_toolkit", "--child", case, "--rows", str(rows), "--chdb", chdb_dir]
    if pg_database:
        args += ["--pg-database", pg_database]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child")
    parser.add_argument("--chdb")
    parser.add_argument("--pg-database")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.rows, args.chdb, args.pg_database)))
        return

    from clinicflow_dev.admin import admin_pg

    chdb_dir = tempfile.mkdtemp(prefix="cf_bench_chdb_")
    databases = {n: prepare_pg(n) for n in (args.rows, args.big_rows)}
    try:
        times: dict[str, list[float]] = {c: [] for c in ("loader", "plain_insert", "pipeline", "plain_script")}
        peaks: dict[str, float] = {}
        for _ in range(args.rounds):
            for case in times:
                result = child(case, args.rows, chdb_dir, databases[args.rows])
                times[case].append(result["seconds"])
                peaks[case] = max(peaks.get(case, 0.0), result["peak_rss_mb"])
        big = {
            case: child(case, args.big_rows, chdb_dir, databases[args.big_rows])["peak_rss_mb"]
            for case in ("loader", "pipeline")
        }
    finally:
        for name in databases.values():
            admin_pg(pg_server(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def rate(case: str) -> float:
        return args.rows / statistics.median(times[case])

    print(f"rows: {args.rows:,} ({args.rounds} interleaved rounds, medians; chDB through clickhouse-connect)")
    for case in times:
        print(
            f"  {case:13s} {rate(case):>12,.0f} rows/s  (best {args.rows / min(times[case]):,.0f})  "
            f"peak RSS {peaks[case]:.0f} MB"
        )
    print(f"ratio loader / plain insert loop:        {rate('loader') / rate('plain_insert'):.2f}")
    print(f"ratio pipeline / plain fetchall script:  {rate('pipeline') / rate('plain_script'):.2f}")
    print(
        f"peak RSS at {args.big_rows:,} / {args.rows:,} rows: loader {big['loader']:.0f} / {peaks['loader']:.0f} MB "
        f"({big['loader'] / peaks['loader']:.2f}x), pipeline {big['pipeline']:.0f} / {peaks['pipeline']:.0f} MB "
        f"({big['pipeline'] / peaks['pipeline']:.2f}x)"
    )


if __name__ == "__main__":
    main()
