"""Bench: the default nightly with reconciliation against a full copy + load, on a procedurelog-shaped table.

In the same run, on the same rows (each step in a child process, so its peak RSS is its own):

* **full**: replication full copy (``replicate_table_once(full_refresh=True)``) then a full
  load with verification (``load_table_once(full_refresh=True)``): what a first night or a
  ``--full-refresh`` costs;
* **nightly**: after 0.1% of the rows changed (a quarter deleted, a quarter updated
  silently — the change stamp left alone —, a quarter updated normally, a quarter inserted,
  some of them backdated), the default night: incremental copy + reconciliation of the
  replica, incremental load + reconciliation of raw (which is also the verification).

Prints both times, their ratio for a full checksum sweep (``reconcile_slices: 1``) and for a
rolling weekly sweep (``reconcile_slices: 7``), what each night repaired, and the peak RSS at
``--rows`` and ``--big-rows`` (memory must not grow with the table). Checks that the source,
the replica and raw end equal, so a fast but wrong night cannot pass.

    uv run --frozen python -m bench.bench_reconcile [--rows 1000000] [--big-rows 3000000] [--batch 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

from bench.bench_load import _run_measured
from clinicflow_dev.admin import admin_mysql, admin_pg

ROOT = Path(__file__).resolve().parents[1]
TABLE = "procedurelog"

_CHILD = """
import json, sys, time
from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental import small_tables
from clinicflow.opendental.warehouse import load_steps
from clinicflow.opendental.tables.config import TableConfig
a = json.loads(sys.argv[1])
src, rep, pg = MySQLServer(**a["src"]), MySQLServer(**a["rep"]), PostgresServer(**a["pg"])
config = TableConfig(primary_key=["ProcNum"], batch_size=a["batch"], extraction_strategy="incremental",
                     incremental_columns=["DateTStamp"], reconcile_slices=a["slices"])
full = a["mode"] == "full"
load_steps.setup_target(pg)
t = time.perf_counter()
# The nightly's steps for one table, with its hand-over from replication to load (as its tasks do).
out = small_tables.replicate_and_load_small(src, rep, pg, {a["table"]: config},
                                          load_steps.LoadOptions(full_refresh=full))[0]
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"seconds": time.perf_counter() - t, "copy_seconds": out.replication_seconds, "mode": out.mode,
                  "status": out.status, "verification": out.verification, "error": out.error,
                  "replica": out.reconciliation.get("replica"), "raw": out.reconciliation.get("raw"),
                  "rss_mb": int(hwm) / 1024}))
"""


def _servers(tag: str):
    from blocks.databases import MySQLServer, PostgresServer

    my = MySQLServer(
        host=os.environ.get("CLINICFLOW_TEST_MYSQL_HOST", "127.0.0.1"), port=3306, username="root", database=""
    )
    pg = PostgresServer(
        host=os.environ.get("CLINICFLOW_TEST_PG_HOST", "127.0.0.1"), port=5432, username="postgres", database="postgres"
    )
    names = {k: f"cf_bench_rec_{k}_{tag}" for k in ("src", "rep", "pg")}
    for key in ("src", "rep"):
        admin_mysql(my, f"CREATE DATABASE `{names[key]}` CHARACTER SET utf8mb3")
    admin_pg(pg, f'CREATE DATABASE "{names["pg"]}"')
    return (
        my.model_copy(update={"database": names["src"]}),
        my.model_copy(update={"database": names["rep"]}),
        pg.model_copy(update={"database": names["pg"]}),
        names,
        my,
        pg,
    )


def _step(src, rep, pg, mode: str, batch: int, slices: int) -> dict:
    dump = {
        k: s.model_dump(mode="json", exclude={"password", "block_type_slug"})
        for k, s in (("src", src), ("rep", rep), ("pg", pg))
    }
    args = {**dump, "table": TABLE, "batch": batch, "mode": mode, "slices": slices}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    _wall, _, out = _run_measured([sys.executable, "-c", _CHILD, json.dumps(args)], cwd=ROOT, env=env)
    result = json.loads(out.strip().splitlines()[-1])
    if result["status"] not in ("ok", "unchanged") or result["verification"] != "ok":
        raise RuntimeError(f"{mode} night did not complete: {result}")
    return result


def _change(src, rows: int, night: int) -> int:
    """0.1% of the rows: deletes, silent updates, normal updates, inserts (a fifth of them backdated)."""
    n = max(4, rows // 1000) // 4
    step = rows // n
    conn = src.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
            cur.execute(f"DELETE FROM `{TABLE}` WHERE `ProcNum` % {step} = {night}")
            cur.execute(
                f"UPDATE `{TABLE}` SET `ProcFee` = `ProcFee` + 1, `DateTStamp` = `DateTStamp` "
                f"WHERE `ProcNum` % {step} = {night + step // 3}"
            )
            cur.execute(
                f"UPDATE `{TABLE}` SET `ClaimNote` = 'updated', `DateTStamp` = NOW() "
                f"WHERE `ProcNum` % {step} = {night + 2 * step // 3}"
            )
            cur.execute(f"SELECT MAX(`ProcNum`) FROM `{TABLE}`")
            top = int(cur.fetchone()[0])
            values = ", ".join(f"({top + i + 1}, {i}, IF({i} % 5 = 0, '2001-01-01', NOW()))" for i in range(n))
            cur.execute(f"INSERT INTO `{TABLE}` (`ProcNum`, `PatNum`, `DateTStamp`) VALUES {values}")
    finally:
        conn.close()
    return 4 * n


def _equal(src, rep, pg) -> None:
    from clinicflow.connectors.mysql import catalog, checksums, sessions
    from clinicflow.opendental.tables.config import TableConfig
    from clinicflow.opendental.warehouse import load_plan, verify

    if checksums.table_checksum(src, TABLE) != checksums.table_checksum(rep, TABLE):
        raise RuntimeError("the replica differs from the source after the night")
    my, pgc = sessions.raw_connection(rep, zone="server"), pg.connect()
    try:
        result = verify.verify_table(
            my, pgc, load_plan.plan_load(catalog.read_table(my, TABLE), TableConfig(primary_key=["ProcNum"]))
        )
    finally:
        my.close()
        pgc.close()
    if not result.ok:
        raise RuntimeError(f"raw differs from the replica after the night: {result.summary()}")


def run(rows: int, batch: int) -> dict:
    from clinicflow_dev import generator

    tag = uuid.uuid4().hex[:8]
    src, rep, pg, names, my_admin, pg_admin = _servers(tag)
    try:
        generator.create_procedurelog_like(src, rows)
        full = _step(src, rep, pg, "full", batch, 1)
        nights = {}
        for night, slices in enumerate((1, 7), start=1):
            changed = _change(src, rows, night)
            time.sleep(1.1)  # the watermark's one-second overlap must not see tonight's rows as just copied
            nights[slices] = _step(src, rep, pg, "nightly", batch, slices) | {"changed": changed}
            if slices > 1:
                # Silent updates outside tonight's slice wait for their night; a full sweep (untimed)
                # must find exactly those and nothing else (no delete or insert left behind).
                nights[slices]["deferred"] = _step(src, rep, pg, "nightly", batch, 1)["replica"]
            _equal(src, rep, pg)
        return {"rows": rows, "full": full, "nights": nights}
    finally:
        for key in ("src", "rep"):
            admin_mysql(my_admin, f"DROP DATABASE IF EXISTS `{names[key]}`")
        admin_pg(pg_admin, f'DROP DATABASE IF EXISTS "{names["pg"]}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=3_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    args = parser.parse_args()
    results = [run(args.rows, args.batch)] + ([run(args.big_rows, args.batch)] if args.big_rows else [])
    for result in results:
        full = result["full"]
        print(
            f"\n{result['rows']:,} rows: full copy + load {full['seconds']:.2f} s "
            f"(copy {full['copy_seconds']:.2f} s), peak RSS {full['rss_mb']:.0f} MB"
        )
        for slices, night in result["nights"].items():
            replica, raw = night["replica"], night["raw"]
            label = (
                "weekly checksum sweep, what analyze-schema writes for >= 1M rows"
                if slices > 1
                else "every range checksummed every night"
            )
            print(
                f"  nightly after {night['changed']:,} changed rows, reconcile_slices={slices} ({label}): "
                f"{night['seconds']:.2f} s "
                f"(copy + reconcile replica {night['copy_seconds']:.2f} s) = "
                f"{100 * night['seconds'] / full['seconds']:.1f}% of the full copy + load; "
                f"peak RSS {night['rss_mb']:.0f} MB"
            )
            if "deferred" in night:
                d = night["deferred"]
                print(
                    f"    left for later nights of the weekly sweep (found by a full sweep afterwards): "
                    f"{d['rows_changed']} silently updated rows, {d['rows_deleted']} deletes, "
                    f"{d['rows_missing']} missing"
                )
            for leg, stats in (("replica", replica), ("raw", raw)):
                print(
                    f"    {leg}: {stats['swept']}, {stats['ranges_hashed']}/{stats['ranges']} ranges checksummed, "
                    f"{stats['ranges_recopied']} re-read: {stats['rows_deleted']} deleted, "
                    f"{stats['rows_missing']} missing copied, {stats['rows_changed']} changed copied"
                )
    if len(results) == 2:
        small, big = (r["nights"][1]["rss_mb"] for r in results)
        print(
            f"\npeak RSS of the nightly: {small:.0f} MB at {results[0]['rows']:,} rows, {big:.0f} MB at "
            f"{results[1]['rows']:,} rows ({100 * (big - small) / small:+.0f}%)"
        )


if __name__ == "__main__":
    sys.exit(main())
