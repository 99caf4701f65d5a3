"""Bench: full load of a procedurelog-shaped table (36 columns) from MySQL into PostgreSQL.

In the same run, on the same rows:

* **project**: ``clinicflow.load_steps.load_table_once`` (server-side COPY
  encoding, streamed into ``COPY FROM STDIN``, key and indexes built after,
  atomic swap), in a child process so its peak RSS is its own;
* **pgloader** (the anchor tool), same table, default casts, indexes included;
* **bare COPY**: ``COPY FROM`` a server-side file holding exactly the COPY
  text of the same rows into an unindexed table with the same columns (the
  write limit), and the same followed by the same key and indexes.

Prints rows/s, the ratios, and the project's peak RSS for ``--rows`` and
``--big-rows`` (memory must not grow with the table).

    uv run --frozen python -m bench.bench_load [--rows 1000000] [--big-rows 3000000] [--batch 100000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench._admin import admin_mysql, admin_pg

ROOT = Path(__file__).resolve().parents[1]
TABLE = "procedurelog"

_CHILD = """
import json, sys, time
from blocks.databases import MySQLServer, PostgresServer
from clinicflow import load_steps
from clinicflow.config import TableConfig
a = json.loads(sys.argv[1])
load_steps.setup_target(PostgresServer(**a["pg"]))
t = time.perf_counter()
out = load_steps.load_table_once(MySQLServer(**a["my"]), PostgresServer(**a["pg"]), a["table"],
                                 TableConfig(primary_key=["ProcNum"], batch_size=a["batch"],
                                             extraction_strategy="incremental", incremental_columns=["DateTStamp"]),
                                 load_steps.LoadOptions(verify=a["verify"], full_refresh=True))
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"seconds": time.perf_counter() - t, "rows": out.rows, "status": out.status,
                  "verification": out.verification, "error": out.error, "rss_mb": int(hwm) / 1024}))
"""


def _vm_hwm_mb(pid: int | str) -> float:
    """Peak resident set of a process (VmHWM: per address space, so not inflated by the parent at fork)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def _run_measured(cmd: list[str], **kw) -> tuple[float, float, str]:  # noqa: ANN003
    """Run ``cmd``; return (wall seconds, peak RSS MB sampled from /proc every 0.1 s, stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out_file:
        proc = subprocess.Popen(cmd, stdout=out_file, **kw)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _vm_hwm_mb(proc.pid))
            time.sleep(0.1)
        wall = time.perf_counter() - start
        out_file.seek(0)
        out = out_file.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed with exit {proc.returncode}: {out[-2000:]}")
    return wall, peak, out


def _project(my, pg, rows: int, batch: int, verify: bool) -> dict:  # noqa: ANN001
    args = {"my": my.model_dump(mode="json", exclude={"password", "block_type_slug"}), "pg": pg.model_dump(mode="json", exclude={"password", "block_type_slug"}),
            "table": TABLE, "batch": batch, "verify": verify}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wall, rss, out = _run_measured([sys.executable, "-c", _CHILD, json.dumps(args)], cwd=ROOT, env=env)
    result = json.loads(out.strip().splitlines()[-1])
    if result["status"] != "ok" or result["rows"] != rows:
        raise RuntimeError(f"project load did not complete: {result}")
    return {"seconds": result["seconds"], "process_seconds": wall, "rss_mb": result["rss_mb"],
            "verification": result["verification"]}


def _pgloader(my, pg) -> dict:  # noqa: ANN001
    tool = shutil.which("pgloader")
    if tool is None:
        raise RuntimeError("pgloader not installed (scripts/bootstrap.sh installs it)")
    command = f"""LOAD DATABASE
  FROM mysql://{my.username}@{my.host}:{my.port}/{my.database}
  INTO postgresql://{pg.username}@{pg.host}:{pg.port}/{pg.database}
  WITH include drop, create tables, create indexes, reset no sequences
  INCLUDING ONLY TABLE NAMES MATCHING '{TABLE}'
  ALTER SCHEMA '{my.database}' RENAME TO 'pgloader';
"""
    with tempfile.NamedTemporaryFile("w", suffix=".load", delete=False) as f:
        f.write(command)
    try:
        wall, rss, _ = _run_measured([tool, "--quiet", f.name], stderr=subprocess.DEVNULL)
    finally:
        os.unlink(f.name)
    return {"seconds": wall, "rss_mb": rss}


def _bare_copy(my, pg, rows: int) -> dict:  # noqa: ANN001
    """COPY FROM a server-side file of the same rows (encoded once, outside the timing)."""
    from clinicflow import pgload
    from clinicflow.config import TableConfig

    directory = Path(tempfile.mkdtemp(prefix="cf_bench_copy_"))
    os.chmod(directory, 0o755)
    path = directory / "rows.copy"
    conn = pgload.mysql_connect(my, streaming=True)
    try:
        plan = pgload.plan_table(pgload.describe_source(conn, TABLE), TableConfig(primary_key=["ProcNum"]))
        with conn.cursor() as cur, open(path, "wb") as out:
            cur.execute(pgload.copy_select_sql(plan, counted=False))
            while batch := cur.fetchmany(10_000):
                out.write(b"\n".join(r[0] for r in batch) + b"\n")
    finally:
        conn.close()
    os.chmod(path, 0o644)
    pg_conn = pg.connect()
    try:
        with pg_conn.cursor() as cur:
            cur.execute("CREATE SCHEMA IF NOT EXISTS bare")
            cur.execute(pgload.create_table_sql(plan, "bare"))
        pg_conn.commit()
        start = time.perf_counter()
        with pg_conn.cursor() as cur:
            cur.execute(f"COPY bare.{TABLE} FROM %s", (str(path),))
            copied = cur.rowcount
        pg_conn.commit()
        copy_seconds = time.perf_counter() - start
        with pg_conn.cursor() as cur:
            for statement in [pgload.primary_key_sql(plan, "bare"), *pgload.index_sqls(plan, "bare")]:
                cur.execute(statement)
        pg_conn.commit()
        indexed_seconds = time.perf_counter() - start
    finally:
        pg_conn.close()
        shutil.rmtree(directory, ignore_errors=True)
    if copied != rows:
        raise RuntimeError(f"bare COPY loaded {copied} rows, expected {rows}")
    return {"seconds": copy_seconds, "with_indexes_seconds": indexed_seconds}


def run(rows: int = 1_000_000, big_rows: int = 3_000_000, batch: int = 100_000, keep: bool = False) -> int:
    from blocks.databases import MySQLServer, PostgresServer
    from clinicflow import generator

    name = f"cf_bench_load_{uuid.uuid4().hex[:8]}"
    my = MySQLServer(host=os.environ.get("CLINICFLOW_TEST_MYSQL_HOST", "127.0.0.1"), username="root", database=name)
    pg = PostgresServer(host=os.environ.get("CLINICFLOW_TEST_PG_HOST", "127.0.0.1"), database=name)
    admin_mysql(my, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb3")
    admin_pg(pg, f'CREATE DATABASE "{name}"')
    results: dict[str, dict] = {}
    try:
        t = time.perf_counter()
        generator.create_procedurelog_like(my, rows, table=TABLE)
        print(f"generated {rows:,} rows in {time.perf_counter() - t:.1f}s", flush=True)
        results["project"] = _project(my, pg, rows, batch, verify=False)
        print(f"project:   {results['project']}", flush=True)
        results["pgloader"] = _pgloader(my, pg)
        print(f"pgloader:  {results['pgloader']}", flush=True)
        results["bare"] = _bare_copy(my, pg, rows)
        print(f"bare COPY: {results['bare']}", flush=True)
        t = time.perf_counter()
        verified = _project(my, pg, rows, batch, verify=True)
        results["verify_seconds"] = {"seconds": verified["seconds"] - results["project"]["seconds"]}
        if big_rows:
            generator.create_procedurelog_like(my, big_rows, table=TABLE)
            results["project_big"] = _project(my, pg, big_rows, batch, verify=False)
            print(f"project {big_rows:,}: {results['project_big']}", flush=True)
    finally:
        if not keep:
            admin_mysql(my, f"DROP DATABASE IF EXISTS `{name}`")
            admin_pg(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    project, pgl, bare = results["project"], results["pgloader"], results["bare"]
    rate = rows / project["seconds"]
    print()
    print(f"{'':28}{'seconds':>10}{'rows/s':>12}{'peak RSS MB':>14}")
    print(f"{'project (full load)':28}{project['seconds']:>10.2f}{rate:>12,.0f}{project['rss_mb']:>14.0f}")
    print(f"{'pgloader':28}{pgl['seconds']:>10.2f}{rows / pgl['seconds']:>12,.0f}{pgl['rss_mb']:>14.0f}")
    print(f"{'bare COPY (no index)':28}{bare['seconds']:>10.2f}{rows / bare['seconds']:>12,.0f}")
    print(f"{'bare COPY + same indexes':28}{bare['with_indexes_seconds']:>10.2f}"
          f"{rows / bare['with_indexes_seconds']:>12,.0f}")
    print(f"verification (both sides):   {results['verify_seconds']['seconds']:.2f}s extra")
    print(f"project / pgloader:               {pgl['seconds'] / project['seconds']:.2f}x   (aim >= 2)")
    print(f"project / bare COPY (no index):   {bare['seconds'] / project['seconds']:.0%}   (aim >= 60%)")
    print(f"project / bare COPY + indexes:    {bare['with_indexes_seconds'] / project['seconds']:.0%}")
    if big_rows:
        big = results["project_big"]
        growth = big["rss_mb"] / project["rss_mb"] - 1
        print(f"peak RSS {rows:,} rows: {project['rss_mb']:.0f} MB; {big_rows:,} rows: {big['rss_mb']:.0f} MB "
              f"({growth:+.0%}; aim < 300 MB, within 10%); {big_rows / big['seconds']:,.0f} rows/s at {big_rows:,}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=3_000_000, help="second size for the memory check (0: skip)")
    parser.add_argument("--batch", type=int, default=100_000, help="rows per chunk")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = parser.parse_args(argv)
    return run(args.rows, args.big_rows, args.batch, args.keep)


if __name__ == "__main__":
    sys.exit(main())
