"""Bench: schema analysis of a generated 450-table OpenDental-shaped source (bound: 60 s).

Anchor: ``mysqldump --no-data`` of the same database, i.e. the standard tool
just reading the schema. The analysis does more (samples watermark columns,
probes maxima), so the ratio says what that costs over reading the schema.
``--procedurelog-rows`` makes one table large, to show that sampling is
bounded: the analysis time must not follow the table size.

    uv run --frozen python -m bench.bench_analysis [--tables 450] [--procedurelog-rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from clinicflow_dev.admin import admin_mysql

BOUND_SECONDS = 60.0


def _mysqldump_no_data(server) -> float:
    tool = shutil.which("mysqldump") or shutil.which("mariadb-dump")
    if tool is None:
        raise RuntimeError("mysqldump / mariadb-dump not found")
    cmd = [
        tool,
        "--no-data",
        "--skip-comments",
        f"-h{server.host}",
        f"-P{server.port}",
        f"-u{server.username}",
        server.database,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def run(tables: int = 450, procedurelog_rows: int = 1_000_000, runs: int = 3, keep: bool = False) -> int:
    from blocks.databases import MySQLServer
    from clinicflow.core.sql import quote_ident
    from clinicflow.opendental.tables import schema_analysis, tables_yml
    from clinicflow_dev import generator

    base = MySQLServer.from_env("opendental-source", {"database": ""})
    name = f"cf_bench_analysis_{uuid.uuid4().hex[:8]}"
    server = base.model_copy(update={"database": name})
    admin_mysql(server, f"CREATE DATABASE {quote_ident(name, 'mysql')} CHARACTER SET utf8mb3")
    try:
        start = time.perf_counter()
        generator.create_wide_source(server, tables=tables)
        if procedurelog_rows:
            generator.create_procedurelog_like(server, procedurelog_rows)
        print(
            f"source: {server.describe()}: {tables} tables, procedurelog {procedurelog_rows:,} rows, "
            f"generated in {time.perf_counter() - start:.1f} s"
        )

        anchor = min(_mysqldump_no_data(server) for _ in range(runs))
        out = Path(tempfile.mkdtemp(prefix="cf_bench_analysis_")) / "tables.yml"
        timings = []
        for _ in range(runs):
            out.unlink(missing_ok=True)
            start = time.perf_counter()
            analysis = schema_analysis.analyze_source(server)
            tables_yml.write_tables_yml(analysis, out)
            timings.append(time.perf_counter() - start)
        best, median = min(timings), statistics.median(timings)
        proc = analysis.tables["procedurelog"].config
        print(
            f"analysis ({len(analysis.tables)} tables, file {out.stat().st_size / 1024:.0f} KiB): "
            f"best {best:.2f} s, median {median:.2f} s over {runs} runs"
        )
        print(f"anchor mysqldump --no-data: best {anchor:.2f} s; ratio analysis/anchor = {best / anchor:.2f}x")
        print(
            f"procedurelog: {proc.extraction_strategy.value}, watermark {proc.incremental_columns}, "
            f"batch_size {proc.batch_size}, estimated_rows {proc.estimated_rows:,}"
        )
        ok = median <= BOUND_SECONDS
        print(
            f"bound {BOUND_SECONDS:.0f} s for {tables} tables: {'PASS' if ok else 'FAIL'} "
            f"(median at {100 * median / BOUND_SECONDS:.1f}% of the bound)"
        )
        shutil.rmtree(out.parent, ignore_errors=True)
        return 0 if ok else 1
    finally:
        if not keep:
            admin_mysql(server, f"DROP DATABASE IF EXISTS {quote_ident(name, 'mysql')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=450)
    parser.add_argument("--procedurelog-rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    args = parser.parse_args(argv)
    return run(args.tables, args.procedurelog_rows, args.runs, args.keep)


if __name__ == "__main__":
    sys.exit(main())
