"""Bench: a ``document``-shaped table (2,000 rows, ~200 MB of LONGBLOB/LONGTEXT values of 1 KB-4 MB), both legs.

In the same run, on the same rows:

* **replica leg**: ``replicate_table_once`` (full copy: streamed values escaped by the client into
  ``LOAD DATA LOCAL``) vs ``mysqldump --quick | mysql``;
* **PostgreSQL leg**: ``load_table_once`` (full load from the replica, COPY, key, verification)
  vs **pgloader** on the same replica table (default casts, indexes);
* **nightly after 10 changed rows**: both legs again (incremental copy, reconciliation,
  verification), as a share of the two full copies (aim <= 10%).

The project's steps run in child processes, so each peak RSS (VmHWM) is its own (aim < 500 MB).
Project seconds are timed inside the child (no interpreter start); the anchor tools' wall time
includes their start.

    uv run --frozen python -m bench.bench_blobs [--rows 2000] [--mb 200] [--engine InnoDB|MyISAM]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.bench_load import _pgloader, _run_measured
from clinicflow_dev.admin import admin_mysql, admin_pg

ROOT = Path(__file__).resolve().parents[1]
TABLE = "document"
RESULTS = ROOT / "bench" / "results" / "blobs-history.md"

_CHILD = """
import json, sys, time
from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental.replication import replica_copy
from clinicflow.opendental.tables.config import TableConfig
from clinicflow.opendental.warehouse import load_steps
a = json.loads(sys.argv[1])
config = TableConfig(primary_key=["DocNum"], extraction_strategy="incremental", incremental_columns=["DateTStamp"])
src, rep, pg = MySQLServer(**a["src"]), MySQLServer(**a["rep"]), PostgresServer(**a["pg"])
load_steps.setup_target(pg)
t = time.perf_counter()
out = {}
if a["step"] in ("replica", "nightly"):
    r = replica_copy.replicate_table_once(src, rep, "document", config, full_refresh=a["step"] == "replica")
    out["replica_mode"], out["replica_seconds"] = r["mode"], time.perf_counter() - t
    out["replica_note"], out["reconciled"] = r["note"], str(r["reconciled"])
if a["step"] in ("load", "nightly"):
    t2 = time.perf_counter()
    o = load_steps.load_table_once(rep, pg, "document", config,
                                   load_steps.LoadOptions(full_refresh=a["step"] == "load"))
    if o.status != "ok" or o.verification not in ("ok", "skipped", ""):
        raise SystemExit(f"load failed: {o.status} {o.verification} {o.error}")
    out["load_mode"], out["load_seconds"], out["rows"] = o.mode, time.perf_counter() - t2, o.rows
    out["load_note"] = str(o.note) if hasattr(o, "note") else ""
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
out.update(seconds=time.perf_counter() - t, rss_mb=int(hwm) / 1024)
print(json.dumps(out))
"""


def _sizes(rows: int, total_mb: int, seed: int = 7) -> list[tuple[int, int]]:
    """(blob bytes, text bytes) per row: mostly 1-64 KB, 3% of rows 1-4 MB, scaled to ``total_mb``."""
    rng = random.Random(seed)
    raw = []
    for _ in range(rows):
        big = rng.random() < 0.03
        size = rng.uniform(1 << 20, 4 << 20) if big else 2 ** rng.uniform(10, 16)
        raw.append(size)
    scale = total_mb * (1 << 20) / sum(raw)
    out = []
    for size in raw:
        n = int(min(max(size * scale, 1024), 4 << 20))
        share = rng.uniform(0.2, 0.8)
        out.append((int(n * share), n - int(n * share)))
    return out


def _create(src, rows: int, total_mb: int, engine: str = "InnoDB") -> int:
    conn = src.connect(autocommit=True)
    total = 0
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE `{TABLE}` (`DocNum` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                "`PatNum` bigint NOT NULL, `Description` varchar(255) NOT NULL, "
                "`DateCreated` datetime NOT NULL, "
                "`DateTStamp` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(), "
                "`ImgType` tinyint NOT NULL, `RawBase64` longtext NOT NULL, `Thumbnail` longblob NULL, "
                f"KEY `PatNum` (`PatNum`)) ENGINE={engine} DEFAULT CHARSET=utf8mb3"
            )
            for i, (blob, text) in enumerate(_sizes(rows, total_mb)):
                # A 1 KB random unit repeated: every byte value occurs, escapes as often as in real images.
                cur.execute(
                    f"INSERT INTO `{TABLE}` (PatNum, Description, DateCreated, ImgType, RawBase64, Thumbnail) "
                    "VALUES (%s, %s, '2024-03-01 10:00:00' + INTERVAL %s MINUTE, %s, "
                    "LEFT(REPEAT(REPLACE(TO_BASE64(RANDOM_BYTES(768)), '\\n', ''), %s), %s), "
                    "LEFT(REPEAT(RANDOM_BYTES(1024), %s), %s))",
                    (i % 300, f"scan {i}\twith tab", i, i % 4, text // 1024 + 1, text, blob // 1024 + 1, blob),
                )
                total += blob + text
            # Change stamps spread as in a real table (one per row), all before the nightly's changes.
            cur.execute(f"UPDATE `{TABLE}` SET DateTStamp = '2024-03-01 00:00:00' + INTERVAL DocNum MINUTE")
    finally:
        conn.close()
    return total


def _fingerprint_mysql(server) -> list[tuple]:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT DocNum, MD5(RawBase64), MD5(Thumbnail), Description FROM `{TABLE}` ORDER BY DocNum")
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _fingerprint_pg(pg, schema: str, quoted: bool = True) -> list[tuple]:
    cols = (
        ('"DocNum"', '"RawBase64"', '"Thumbnail"', '"Description"')
        if quoted
        else ("docnum", "rawbase64", "thumbnail", "description")
    )
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {cols[0]}, md5({cols[1]}), md5({cols[2]}), {cols[3]} FROM {schema}.{TABLE} ORDER BY 1")
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _child(step: str, src, rep, pg) -> dict:
    dump = {"exclude": {"password", "block_type_slug"}, "mode": "json"}
    args = {"step": step, "src": src.model_dump(**dump), "rep": rep.model_dump(**dump), "pg": pg.model_dump(**dump)}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wall, _, out = _run_measured([sys.executable, "-c", _CHILD, json.dumps(args)], cwd=ROOT, env=env)
    result: dict = json.loads(out.strip().splitlines()[-1])
    result["process_seconds"] = wall
    return result


def run(rows: int = 2000, total_mb: int = 200, engine: str = "InnoDB") -> list[str]:
    from blocks.databases import MySQLServer, PostgresServer

    tag = uuid.uuid4().hex[:8]
    src, rep, dump_dst = (
        MySQLServer(host="127.0.0.1", username="root", database=f"cf_bench_blob_{n}_{tag}")
        for n in ("src", "rep", "dump")
    )
    pg = PostgresServer(host="127.0.0.1", database=f"cf_bench_blob_{tag}")
    for server in (src, rep, dump_dst):
        admin_mysql(server, f"CREATE DATABASE `{server.database}` CHARACTER SET utf8mb3")
    admin_pg(pg, f'CREATE DATABASE "{pg.database}"')
    lines: list[str] = []
    try:
        t = time.perf_counter()
        total = _create(src, rows, total_mb, engine)
        print(
            f"generated {rows:,} rows, {total / 2**20:.0f} MB of values in {time.perf_counter() - t:.1f}s", flush=True
        )
        replica = _child("replica", src, rep, pg)
        t = time.perf_counter()
        subprocess.run(
            f"mysqldump -uroot -h127.0.0.1 --quick {src.database} {TABLE}"
            f" | mysql -uroot -h127.0.0.1 {dump_dst.database}",
            shell=True,
            check=True,
        )
        dump_s = time.perf_counter() - t
        expected = _fingerprint_mysql(src)
        assert _fingerprint_mysql(rep) == expected, "replica differs from the source"
        assert _fingerprint_mysql(dump_dst) == expected, "mysqldump copy differs from the source"
        load = _child("load", src, rep, pg)
        print(
            f"replica leg: project {replica['seconds']:.2f}s, mysqldump | mysql {dump_s:.2f}s; "
            f"PostgreSQL leg: project {load['seconds']:.2f}s",
            flush=True,
        )
        try:
            pgl = _pgloader(rep, pg, TABLE)
            pgl_note = "defaults"
            if len(_fingerprint_pg(pg, "pgloader", quoted=False)) != rows:
                raise RuntimeError("pgloader lost rows with its defaults")  # it can exit 0 after a batch failed
        except RuntimeError:
            # pgloader's default batches (25,000 rows, prefetch 100,000) of multi-MB rows exhaust its Lisp heap.
            pgl = _pgloader(rep, pg, TABLE, ", batch rows = 100, prefetch rows = 100")
            pgl_note = "batch/prefetch rows = 100: its defaults run out of heap or lose rows on this table"
        assert _fingerprint_pg(pg, "raw") == expected, "raw differs from the replica"
        assert len(_fingerprint_pg(pg, "pgloader", quoted=False)) == rows, "pgloader lost rows"

        conn = src.connect(autocommit=True)
        with conn.cursor() as cur:
            changed = random.Random(3).sample(range(1, rows + 1), 10)
            cur.execute(
                f"UPDATE `{TABLE}` SET Description = CONCAT(Description, ' v2'), "
                "Thumbnail = CONCAT(Thumbnail, X'00FF'), DateTStamp = '2024-04-01 00:00:00' "
                f"WHERE DocNum IN ({', '.join(str(k) for k in changed)})"
            )
        conn.close()
        nightly = _child("nightly", src, rep, pg)
        print("nightly:", json.dumps(nightly), flush=True)
        expected = _fingerprint_mysql(src)
        assert _fingerprint_mysql(rep) == expected, "nightly left a diff"
        assert _fingerprint_pg(pg, "raw") == expected, "nightly left a diff"

        full = replica["seconds"] + load["seconds"]
        rss = max(replica["rss_mb"], load["rss_mb"], nightly["rss_mb"])
        lines = [
            f"rows: {rows:,}  values: {total / 2**20:.0f} MB (1 KB-4 MB), {engine}, "
            f"machine load {os.getloadavg()[0]:.1f}",
            f"replica leg: project {replica['seconds']:.2f}s vs mysqldump --quick | mysql {dump_s:.2f}s: "
            f"{dump_s / replica['seconds']:.2f}x (aim >= 1.0x)",
            f"PostgreSQL leg: project {load['seconds']:.2f}s (incl. key and verification) vs pgloader "
            f"{pgl['seconds']:.2f}s ({pgl_note}): {pgl['seconds'] / load['seconds']:.2f}x (aim >= 1.0x)",
            f"nightly after 10 changed rows: {nightly['seconds']:.2f}s (replica {nightly['replica_seconds']:.2f}s, "
            f"load {nightly['load_seconds']:.2f}s; modes {nightly['replica_mode']}/{nightly['load_mode']}) = "
            f"{100 * nightly['seconds'] / full:.1f}% of the full copy "
            f"{full:.2f}s (aim <= 10%)",
            f"peak RSS of the project's steps: {rss:.0f} MB (aim < 500 MB); pgloader {pgl['rss_mb']:.0f} MB",
        ]
        for line in lines:
            print(line)
    finally:
        for server in (src, rep, dump_dst):
            admin_mysql(server, f"DROP DATABASE IF EXISTS `{server.database}`")
        admin_pg(pg, f'DROP DATABASE IF EXISTS "{pg.database}" WITH (FORCE)')
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--mb", type=int, default=200)
    # Practices' OpenDental databases hold both engines (MyISAM mostly in older ones).
    parser.add_argument("--engine", choices=("InnoDB", "MyISAM"), default="InnoDB")
    args = parser.parse_args()
    lines = run(args.rows, args.mb, args.engine)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(f"\n## {stamp}\n\n" + "".join(f"* {line}\n" for line in lines))


if __name__ == "__main__":
    main()
