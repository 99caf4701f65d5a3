"""Bench: full load of a procedurelog-shaped table (36 columns) from MySQL into PostgreSQL.

In the same run, on the same rows:

* **project**: ``clinicflow.opendental.warehouse.load_steps.load_table_once`` (server-side COPY
  encoding, streamed into ``COPY FROM STDIN``, key and indexes built after,
  atomic swap), in a child process so its peak RSS is its own;
* **pgloader** (the anchor tool), same table, default casts, indexes included;
* **project, verified**: the same load with its verification (docs/loading.md),
  whose cost is printed as the difference to the unverified load of the same
  round;
* **bare COPY**: ``COPY FROM`` a server-side file holding exactly the COPY
  text of the same rows into an unindexed table with the same columns (the
  write limit), and the same followed by the same key and indexes.

Each load writes into an empty target, as ``COPY FROM`` does: the previous
round's table is dropped before the clock starts (for pgloader too, whose
``include drop`` would otherwise drop it on its own time). One more project
load then replaces a loaded table (a nightly full refresh): that also pays for
dropping the replaced table, printed on its own line.

The four run in ``--rounds`` interleaved rounds (a CHECKPOINT before each),
because this machine is shared and its speed drifts by 20% within minutes;
the median and the best of each are printed, and the ratios of both.

Prints rows/s, the ratios, and the project's peak RSS for ``--rows`` and
``--big-rows`` (memory must not grow with the table).

    uv run --frozen python -m bench.bench_load [--rows 1000000] [--big-rows 3000000] [--batch 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from clinicflow_dev.admin import admin_mysql, admin_pg

ROOT = Path(__file__).resolve().parents[1]
TABLE = "procedurelog"

_CHILD = """
import json, sys, time
from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental.warehouse import load_steps
from clinicflow.opendental.tables.config import TableConfig
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


def _run_measured(cmd: list[str], **kw) -> tuple[float, float, str]:
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


def _project(my, pg, rows: int, batch: int, verify: bool) -> dict:
    args = {
        "my": my.model_dump(mode="json", exclude={"password", "block_type_slug"}),
        "pg": pg.model_dump(mode="json", exclude={"password", "block_type_slug"}),
        "table": TABLE,
        "batch": batch,
        "verify": verify,
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wall, _rss, out = _run_measured([sys.executable, "-c", _CHILD, json.dumps(args)], cwd=ROOT, env=env)
    result = json.loads(out.strip().splitlines()[-1])
    if result["status"] != "ok" or result["rows"] != rows:
        raise RuntimeError(f"project load did not complete: {result}")
    return {
        "seconds": result["seconds"],
        "process_seconds": wall,
        "rss_mb": result["rss_mb"],
        "verification": result["verification"],
    }


def _pgloader(my, pg, table: str = TABLE, options: str = "") -> dict:
    tool = shutil.which("pgloader")
    if tool is None:
        raise RuntimeError("pgloader not installed (scripts/bootstrap.sh installs it)")
    command = f"""LOAD DATABASE
  FROM mysql://{my.username}@{my.host}:{my.port}/{my.database}
  INTO postgresql://{pg.username}@{pg.host}:{pg.port}/{pg.database}
  WITH include drop, create tables, create indexes, reset no sequences{options}
  INCLUDING ONLY TABLE NAMES MATCHING '{table}'
  ALTER SCHEMA '{my.database}' RENAME TO 'pgloader';
"""
    with tempfile.NamedTemporaryFile("w", suffix=".load", delete=False) as f:
        f.write(command)
    try:
        wall, rss, _ = _run_measured([tool, "--quiet", f.name], stderr=subprocess.DEVNULL)
    finally:
        os.unlink(f.name)
    return {"seconds": wall, "rss_mb": rss}


def _encode_rows(my, directory: Path) -> tuple[Path, object]:
    """The COPY text of the table's rows in a server-readable file (once, outside any timing), and the plan."""
    from clinicflow.connectors.mysql import catalog, sessions
    from clinicflow.opendental.tables.config import TableConfig
    from clinicflow.opendental.warehouse import copy_encoding, load_plan

    path = directory / "rows.copy"
    conn = sessions.raw_connection(my, streaming=True, zone="server")
    try:
        plan = load_plan.plan_load(catalog.read_table(conn, TABLE), TableConfig(primary_key=["ProcNum"]))
        with conn.cursor() as cur, open(path, "wb") as out:
            cur.execute(copy_encoding.copy_select_sql(plan, counted=False))
            while batch := cur.fetchmany(10_000):
                out.write(b"\n".join(r[0] for r in batch) + b"\n")
    finally:
        conn.close()
    os.chmod(path, 0o644)
    return path, plan


def _bare_copy(pg, plan, path: Path, rows: int) -> dict:
    """COPY FROM the server-side file into a fresh unindexed table, then the same key and indexes."""
    from clinicflow.opendental.warehouse import ddl, full_load

    pg_conn = pg.connect()
    try:
        with pg_conn.cursor() as cur:
            cur.execute("CREATE SCHEMA IF NOT EXISTS bare")
            cur.execute(f"DROP TABLE IF EXISTS bare.{TABLE}")
            cur.execute(ddl.pg_create_table_sql(plan, "bare"))
        pg_conn.commit()
        start = time.perf_counter()
        with pg_conn.cursor() as cur:
            cur.execute(f"COPY bare.{TABLE} FROM %s", (str(path),))
            copied = cur.rowcount
        pg_conn.commit()
        copy_seconds = time.perf_counter() - start
        with pg_conn.cursor() as cur:
            cur.execute(f"SET maintenance_work_mem = '{full_load.INDEX_BUILD_MEMORY_MB}MB'")
            for statement in [ddl.primary_key_sql(plan, "bare"), *ddl.index_sqls(plan, "bare")]:
                cur.execute(statement)
        pg_conn.commit()
        indexed_seconds = time.perf_counter() - start
    finally:
        pg_conn.close()
    if copied != rows:
        raise RuntimeError(f"bare COPY loaded {copied} rows, expected {rows}")
    return {"seconds": copy_seconds, "with_indexes_seconds": indexed_seconds}


def _empty_target(pg, tool: str) -> None:
    """Drop what ``tool`` loaded in the previous round, outside any timing (bare COPY drops its own)."""
    if tool in ("project", "verified"):
        admin_pg(pg, f"DROP TABLE IF EXISTS raw.{TABLE}")  # no raw table: a first load (its state is not read)
    elif tool == "pgloader":
        admin_pg(pg, "DROP SCHEMA IF EXISTS pgloader CASCADE")


def _stats(values: list[float]) -> tuple[float, float]:
    """(median, best) of a list of seconds."""
    return statistics.median(values), min(values)


def run(
    rows: int = 1_000_000, big_rows: int = 3_000_000, batch: int = 100_000, keep: bool = False, rounds: int = 3
) -> int:
    from blocks.databases import MySQLServer, PostgresServer
    from clinicflow_dev import generator

    name = f"cf_bench_load_{uuid.uuid4().hex[:8]}"
    my = MySQLServer(host=os.environ.get("CLINICFLOW_TEST_MYSQL_HOST", "127.0.0.1"), username="root", database=name)
    pg = PostgresServer(host=os.environ.get("CLINICFLOW_TEST_PG_HOST", "127.0.0.1"), database=name)
    admin_mysql(my, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb3")
    admin_pg(pg, f'CREATE DATABASE "{name}"')
    runs: dict[str, list[dict]] = {"project": [], "verified": [], "pgloader": [], "bare": []}
    results: dict[str, dict] = {}
    directory = Path(tempfile.mkdtemp(prefix="cf_bench_copy_"))
    os.chmod(directory, 0o755)
    try:
        t = time.perf_counter()
        generator.create_procedurelog_like(my, rows, table=TABLE)
        print(f"generated {rows:,} rows in {time.perf_counter() - t:.1f}s", flush=True)
        path, plan = _encode_rows(my, directory)
        # Interleaved rounds: a machine shared with other jobs slows whichever tool
        # runs at that moment, so each tool gets the same chances; medians and
        # bests are printed, every run is shown.
        for round_no in range(1, rounds + 1):
            for tool, measure in (
                ("project", lambda: _project(my, pg, rows, batch, verify=False)),
                ("verified", lambda: _project(my, pg, rows, batch, verify=True)),
                ("pgloader", lambda: _pgloader(my, pg)),
                ("bare", lambda: _bare_copy(pg, plan, path, rows)),
            ):
                _empty_target(pg, tool)
                admin_pg(pg, "CHECKPOINT")  # WAL left by the previous tool is not written on this one's time
                runs[tool].append(measure())
                print(f"round {round_no} {tool:9} {runs[tool][-1]}", flush=True)
        admin_pg(pg, "CHECKPOINT")
        results["replacing"] = _project(my, pg, rows, batch, verify=False)  # raw holds the last round's load
        print(f"project replacing a loaded table: {results['replacing']}", flush=True)
        if big_rows:
            generator.create_procedurelog_like(my, big_rows, table=TABLE)
            _empty_target(pg, "project")
            admin_pg(pg, "CHECKPOINT")
            results["project_big"] = _project(my, pg, big_rows, batch, verify=False)
            print(f"project {big_rows:,}: {results['project_big']}", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if not keep:
            admin_mysql(my, f"DROP DATABASE IF EXISTS `{name}`")
            admin_pg(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    project_med, project_best = _stats([r["seconds"] for r in runs["project"]])
    pgl_med, pgl_best = _stats([r["seconds"] for r in runs["pgloader"]])
    bare_med, bare_best = _stats([r["seconds"] for r in runs["bare"]])
    bare_ix_med, bare_ix_best = _stats([r["with_indexes_seconds"] for r in runs["bare"]])
    rss = max(r["rss_mb"] for r in runs["project"])
    pgl_rss = max(r["rss_mb"] for r in runs["pgloader"])
    print()
    print(f"{rounds} interleaved round(s); seconds as median (best)")
    print(f"{'':28}{'seconds':>16}{'rows/s (median)':>17}{'peak RSS MB':>13}")
    for label, med, best, peak in (
        ("project (full load)", project_med, project_best, f"{rss:.0f}"),
        ("pgloader", pgl_med, pgl_best, f"{pgl_rss:.0f}"),
        ("bare COPY (no index)", bare_med, bare_best, ""),
        ("bare COPY + same indexes", bare_ix_med, bare_ix_best, ""),
    ):
        print(f"{label:28}{f'{med:.2f} ({best:.2f})':>16}{rows / med:>17,.0f}{peak:>13}")
    # Verification's cost: the verified load minus the unverified one of the same round.
    extras = [v["seconds"] - p["seconds"] for p, v in zip(runs["project"], runs["verified"], strict=False)]
    if any(v["verification"] != "ok" for v in runs["verified"]):
        raise RuntimeError(f"verified loads did not verify: {[v['verification'] for v in runs['verified']]}")
    print(
        f"verification: {statistics.median(extras):.2f}s extra (median; per round "
        + ", ".join(f"{e:.2f}s" for e in extras)
        + f"), {statistics.median(extras) / project_med:.0%} "
        f"of the load's median time (aim <= 25%)"
    )
    print(f"project replacing a loaded table (full refresh, its drop included): {results['replacing']['seconds']:.2f}s")
    print(
        f"project / pgloader:               {pgl_med / project_med:.2f}x median, {pgl_best / project_best:.2f}x best"
        f"   (aim >= 3)"
    )
    print(
        f"project / bare COPY (no index):   {bare_med / project_med:.0%} median, {bare_best / project_best:.0%} best"
        f"   (aim >= 75%)"
    )
    print(
        f"project / bare COPY + indexes:    {bare_ix_med / project_med:.0%} median, "
        f"{bare_ix_best / project_best:.0%} best"
    )
    # The same ratios within each round (the loads of one round run minutes apart at
    # most), so a slow spell of the shared machine weighs on both sides of a ratio.
    per_round = [
        (b["seconds"] / p["seconds"], g["seconds"] / p["seconds"])
        for p, g, b in zip(runs["project"], runs["pgloader"], runs["bare"], strict=False)
    ]
    print(
        "per round, project / bare COPY: "
        + ", ".join(f"{bare:.0%}" for bare, _ in per_round)
        + f" (median {statistics.median(b for b, _ in per_round):.0%});"
        + " project / pgloader: "
        + ", ".join(f"{pgl:.2f}x" for _, pgl in per_round)
        + f" (median {statistics.median(g for _, g in per_round):.2f}x)"
    )
    if big_rows:
        big = results["project_big"]
        small_rss = runs["project"][0]["rss_mb"]
        growth = big["rss_mb"] / small_rss - 1
        print(
            f"peak RSS {rows:,} rows: {small_rss:.0f} MB; {big_rows:,} rows: {big['rss_mb']:.0f} MB "
            f"({growth:+.0%}; aim < 300 MB, within 10%); {big_rows / big['seconds']:,.0f} rows/s at {big_rows:,}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=3_000_000, help="second size for the memory check (0: skip)")
    parser.add_argument("--batch", type=int, default=100_000, help="rows per chunk")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three loads (median and best)")
    args = parser.parse_args(argv)
    return run(args.rows, args.big_rows, args.batch, args.keep, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
