"""Bench: a nightly run where nothing changed, over a generated 450-table OpenDental-shaped source.

End to end as an operator (or the CronJob fallback) runs it: ``clinicflow
nightly`` in a fresh process, against a running Prefect server (started
here with ``prefect server start`` on a free port, ``PREFECT_API_URL`` set;
aim: under 10 s) and with Prefect's embedded server (no API configured).
tables.yml comes from the project's schema analysis of the generated
source. A first night loads everything (timed, for reference); the nights
after it, with no change at the source, are the measured ones. The flow's
own time (from clinicflow.etl_runs) is printed too, so Prefect's start-up
cost is visible.

    uv run --frozen python -m bench.bench_nightly_noop [--tables 450] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOUND_SECONDS = 10.0  # against a running server
FLOW_BOUND_SECONDS = 3.0


def _env(source, replica, pg, tables_file: Path, prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        {
            "CLINICFLOW_CREDENTIALS": "env",
            "CLINICFLOW_TABLES_FILE": str(tables_file),
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PYTHONPATH": str(ROOT),
        }
    )
    for block, server in (
        ("OPENDENTAL_SOURCE", source),
        ("OPENDENTAL_REPLICATION", replica),
        ("ANALYTICS_POSTGRES", pg),
    ):
        env.update(
            {
                f"CLINICFLOW_{block}_HOST": server.host,
                f"CLINICFLOW_{block}_PORT": str(server.port),
                f"CLINICFLOW_{block}_USER": server.username,
                f"CLINICFLOW_{block}_DATABASE": server.database,
            }
        )
    return env


def _prefect_server(home: Path, env: dict[str, str]):
    from clinicflow_dev.demo_service import child_environment, free_port, start_prefect_server, wait_healthy

    port = free_port()
    server_env = child_environment({})
    process = start_prefect_server(home, port, server_env)
    url = f"http://127.0.0.1:{port}/api"
    wait_healthy(f"{url}/health", process, home / "server.log")
    return process, url


def _nightly(env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "clinicflow.cli", "nightly"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stdout.decode(errors="replace")[-3000:]
        raise RuntimeError(f"clinicflow nightly failed (exit {proc.returncode}):\n{tail}")
    return seconds


def _last_run(pg) -> tuple[float, int, int]:
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT extract(epoch FROM finished_at - started_at), tables_total, rows_loaded "
                "FROM clinicflow.etl_runs ORDER BY started_at DESC LIMIT 1"
            )
            seconds, tables, rows = cur.fetchone()
            cur.execute(
                "SELECT status, count(*) FROM clinicflow.etl_table_metrics WHERE run_id = "
                "(SELECT run_id FROM clinicflow.etl_runs ORDER BY started_at DESC LIMIT 1) GROUP BY status"
            )
            print("   per-table status:", dict(cur.fetchall()))
        return float(seconds), int(tables), int(rows)
    finally:
        conn.close()


def _nights(env: dict[str, str], pg, runs: int, label: str) -> tuple[float, float]:
    """Best end-to-end and best flow seconds of ``runs`` no-op nights."""
    ends, flows = [], []
    for i in range(runs):
        seconds = _nightly(env)
        flow_s, n, rows = _last_run(pg)
        ends.append(seconds)
        flows.append(flow_s)
        print(
            f"no-op night {i + 1}, {label}: {seconds:.1f}s end to end, flow {flow_s:.2f}s, "
            f"{n} tables, {rows:,} rows read"
        )
    return min(ends), min(flows)


def run(tables: int = 450, runs: int = 1, keep: bool = False) -> int:
    from blocks.databases import MySQLServer, PostgresServer
    from clinicflow.opendental.tables import schema_analysis, tables_yml
    from clinicflow_dev import generator

    tag = uuid.uuid4().hex[:8]
    mysql = MySQLServer(host=os.environ.get("CLINICFLOW_TEST_MYSQL_HOST", "127.0.0.1"), username="root", database="")
    source = mysql.model_copy(update={"database": f"cf_noop_src_{tag}"})
    replica = mysql.model_copy(update={"database": f"cf_noop_rep_{tag}"})
    pg = PostgresServer(host=os.environ.get("CLINICFLOW_TEST_PG_HOST", "127.0.0.1"), database=f"cf_noop_{tag}")
    admin = mysql.connect(database="", autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{source.database}` CHARACTER SET utf8mb3")
    pg_admin = pg.connect(database="postgres")
    pg_admin.autocommit = True
    with pg_admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{pg.database}"')
    workdir = Path(tempfile.mkdtemp(prefix="cf_noop_"))
    try:
        t = time.perf_counter()
        counts = generator.create_wide_source(source, tables=tables)
        print(f"generated {len(counts)} tables, {sum(counts.values()):,} rows in {time.perf_counter() - t:.1f}s")
        tables_file = workdir / "tables.yml"
        tables_yml.write_tables_yml(schema_analysis.analyze_source(source), tables_file)
        env = _env(source, replica, pg, tables_file, workdir / "prefect")
        first = _nightly(env)
        flow_s, n, rows = _last_run(pg)
        print(f"first night (loads everything): {first:.1f}s end to end, flow {flow_s:.1f}s, {n} tables, {rows:,} rows")
        from clinicflow_dev.demo_service import stop_process_group

        server, url = _prefect_server(workdir / "prefect-server", env)
        try:
            served = {**env, "PREFECT_API_URL": url}
            running = _nights(served, pg, runs, "running Prefect server")
        finally:
            stop_process_group(server)
        embedded = _nights(env, pg, runs, "embedded Prefect server")
        print(f"\nno-op nightly over {len(counts)} tables, best of {runs}:")
        print(
            f"  running Prefect server: {running[0]:.1f}s end to end "
            f"({'within' if running[0] <= BOUND_SECONDS else 'OVER'} the {BOUND_SECONDS:.0f}s aim), "
            f"flow {running[1]:.2f}s ({'within' if running[1] <= FLOW_BOUND_SECONDS else 'OVER'} "
            f"the {FLOW_BOUND_SECONDS:.0f}s aim)"
        )
        print(f"  embedded Prefect server: {embedded[0]:.1f}s end to end, flow {embedded[1]:.2f}s")
    finally:
        if not keep:
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{source.database}`")
                cur.execute(f"DROP DATABASE IF EXISTS `{replica.database}`")
            with pg_admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{pg.database}" WITH (FORCE)')
        admin.close()
        pg_admin.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=450)
    parser.add_argument("--runs", type=int, default=1, help="no-op nights to time")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = parser.parse_args(argv)
    return run(args.tables, args.runs, args.keep)


if __name__ == "__main__":
    sys.exit(main())
