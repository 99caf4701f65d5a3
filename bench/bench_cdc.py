"""Bench: CDC from the binlog against the incremental nightly, on the same changes to a 1M-row table.

A throw-away MariaDB with a row binlog holds the source (``clinicflow_dev.binlog_server``); two target pairs
(replica MySQL on the local server + PostgreSQL database) start equal: one kept by CDC, one by the nightly.

* **live**: ``clinicflow cdc start`` (default batching) runs while ``--changes`` changes arrive at ``--rate``
  a second (half updates, a fifth silent updates, a fifth inserts, a tenth deletes; ten rows a statement);
  a trigger on raw records when each change lands: p50/p95 of change → raw lag;
* **catch-up**: with CDC stopped, ``--changes`` more changes; then CDC catches up in one run, and the
  incremental nightly (replication + load, with its reconciliation) runs on the other pair: events/s of
  each on the same changes, and their ratio;
* **quiet**: CPU seconds the running CDC process spends in ``--quiet-seconds`` without changes, per hour,
  against one nightly run on no changes (the anchor).

Checks that both pairs end equal to the source (a fast but wrong run cannot pass).

    uv run --frozen python -m bench.bench_cdc [--rows 1000000] [--changes 10000] [--rate 1000] [--quiet-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql.checksums import checksum_table
from clinicflow.connectors.mysql.sessions import catalog_text, raw_connection
from clinicflow.opendental.cdc.runner import CdcOptions, CdcRunner
from clinicflow.opendental.replication.replica_copy import replicate_table_once
from clinicflow.opendental.tables.config import load_tables_config
from clinicflow.opendental.warehouse.load_steps import LoadOptions, load_table_once, setup_target
from clinicflow_dev.admin import admin_mysql, admin_pg, raw_rows
from clinicflow_dev.binlog_server import binlog_mariadb, cli_env

ROOT = Path(__file__).resolve().parents[1]
TABLE = "procbench"
TABLES_YML = f"""version: 1
tables:
  {TABLE}:
    primary_key: [ProcNum]
    extraction_strategy: incremental
    incremental_columns: [DateTStamp]
    batch_size: 100000
"""


def _exec(server: MySQLServer, *sql: str) -> None:
    conn = server.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for statement in sql:
                cur.execute(statement)
    finally:
        conn.close()


def _create_source(src: MySQLServer, rows: int) -> None:
    _exec(
        src,
        f"CREATE TABLE {TABLE} (ProcNum bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, PatNum bigint NOT NULL,"
        " ProcFee double NOT NULL, Note varchar(255) NULL, ProcDate date NOT NULL, changed_at datetime(6) NULL,"
        " DateTStamp timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),"
        " KEY (DateTStamp)) ENGINE=InnoDB",
        f"INSERT INTO {TABLE} (PatNum, ProcFee, Note, ProcDate, DateTStamp) SELECT seq % 5000, seq / 7,"
        f" CONCAT('note ', seq), '2020-01-01' + INTERVAL seq % 2000 DAY, '2020-01-01' + INTERVAL seq SECOND"
        f" FROM seq_1_to_{int(rows)}",
    )


def _changes(src: MySQLServer, count: int, rate: float | None, rng: random.Random) -> None:
    """``count`` row changes, ten rows a statement, at ``rate`` rows a second (None: as fast as possible)."""
    conn = src.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(f"SELECT MAX(ProcNum) FROM {TABLE}")
            top = int(cur.fetchone()[0])
            started = time.monotonic()
            done = 0
            while done < count:
                ids = ", ".join(str(rng.randint(1, top)) for _ in range(10))
                kind = rng.random()
                if kind < 0.5:
                    cur.execute(
                        f"UPDATE {TABLE} SET ProcFee = ProcFee + 1, changed_at = NOW(6) WHERE ProcNum IN ({ids})"
                    )
                elif kind < 0.7:
                    cur.execute(
                        f"UPDATE {TABLE} SET Note = CONCAT(Note, '+'), changed_at = NOW(6), "
                        f"DateTStamp = DateTStamp WHERE ProcNum IN ({ids})"
                    )
                elif kind < 0.9:
                    cur.execute(
                        f"INSERT INTO {TABLE} (PatNum, ProcFee, Note, ProcDate, changed_at) VALUES "
                        + ", ".join("(1, 2.5, 'new', '2024-05-06', NOW(6))" for _ in range(10))
                    )
                else:
                    cur.execute(f"DELETE FROM {TABLE} WHERE ProcNum IN ({ids})")
                done += 10
                if rate:
                    ahead = done / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
    finally:
        conn.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _caught_up(src: MySQLServer, replica: MySQLServer, pg: PostgresServer) -> bool:
    (master,) = raw_rows(src, "SHOW MASTER STATUS")
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT log_file, log_pos FROM clinicflow.cdc_state")
            row = cur.fetchone()
    finally:
        conn.close()
    return row is not None and row[0] == catalog_text(master[0]) and int(row[1]) >= int(master[1])


def _nightly(src: MySQLServer, replica: MySQLServer, pg: PostgresServer, config: Any) -> float:
    started = time.perf_counter()
    copied = replicate_table_once(src, replica, TABLE, config)
    outcome = load_table_once(replica, pg, TABLE, config, LoadOptions(), replication=copied)
    if outcome.status != "ok":
        raise SystemExit(f"nightly failed: {outcome.error}")
    return time.perf_counter() - started


def _equal(src: MySQLServer, replica: MySQLServer, pg: PostgresServer, label: str) -> None:
    conn_s, conn_r = raw_connection(src), raw_connection(replica)
    try:
        same = checksum_table(conn_s, TABLE) == checksum_table(conn_r, TABLE)
    finally:
        conn_s.close()
        conn_r.close()
    (count,) = raw_rows(src, f"SELECT COUNT(*) FROM {TABLE}")[0]
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*), sum("ProcFee") FROM raw.{TABLE}')
            raw_count, raw_fee = cur.fetchone()
    finally:
        conn.close()
    (src_fee,) = raw_rows(src, f"SELECT SUM(ProcFee) FROM {TABLE}")[0]
    if not same or int(catalog_text(count) or 0) != raw_count or abs(float(catalog_text(src_fee) or 0) - raw_fee) > 1:
        raise SystemExit(f"{label}: the targets differ from the source")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--quiet-seconds", type=float, default=30.0)
    args = parser.parse_args()
    local = MySQLServer(host="127.0.0.1", port=3306, username="root", database="")
    pg_admin = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres")
    tag = uuid.uuid4().hex[:8]
    names = {k: f"cf_bench_cdc_{k}_{tag}" for k in ("src", "rep1", "rep2", "raw1", "raw2")}
    with (
        tempfile.TemporaryDirectory(prefix="cf_bench_cdc_") as tmp,
        binlog_mariadb(Path(tmp), buffer_pool="512M") as root,
    ):
        tables_file = Path(tmp) / "tables.yml"
        tables_file.write_text(TABLES_YML)
        config = load_tables_config(tables_file)
        admin_mysql(root, f"CREATE DATABASE {names['src']}")
        src = root.model_copy(update={"database": names["src"]})
        for k in ("rep1", "rep2"):
            admin_mysql(local, f"CREATE DATABASE {names[k]} CHARACTER SET utf8mb3")
        for k in ("raw1", "raw2"):
            admin_pg(pg_admin, f"CREATE DATABASE {names[k]}")
        rep1, rep2 = (local.model_copy(update={"database": names[k]}) for k in ("rep1", "rep2"))
        raw1, raw2 = (pg_admin.model_copy(update={"database": names[k]}) for k in ("raw1", "raw2"))
        proc = None
        try:
            started = time.perf_counter()
            _create_source(src, args.rows)
            print(f"source: {args.rows} rows in {time.perf_counter() - started:.1f} s", flush=True)
            options = CdcOptions(server_id=5301, until_caught_up=True)
            started = time.perf_counter()
            CdcRunner(src, rep1, raw1, config, options).run()
            snapshot_s = time.perf_counter() - started
            setup_target(raw2)
            started = time.perf_counter()
            replicate_table_once(src, rep2, TABLE, config.effective(TABLE), full_refresh=True)
            load_table_once(rep2, raw2, TABLE, config.effective(TABLE), LoadOptions(full_refresh=True))
            print(
                f"first copy: CDC snapshot {snapshot_s:.1f} s, nightly full {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            conn = raw1.connect()
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE public.arrival (id bigint, changed_at timestamp, arrived timestamp)")
                cur.execute(
                    "CREATE FUNCTION public.arrived() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    'INSERT INTO public.arrival VALUES (NEW."ProcNum", NEW.changed_at, '
                    "clock_timestamp() AT TIME ZONE 'UTC'); RETURN NEW; END $$"
                )
                cur.execute(
                    f"CREATE TRIGGER arrived AFTER INSERT OR UPDATE ON raw.{TABLE} FOR EACH ROW "
                    "EXECUTE FUNCTION public.arrived()"
                )
            conn.commit()
            conn.close()

            # Live: CDC running, changes arriving.
            proc = subprocess.Popen(
                [sys.executable, "-m", "clinicflow.cli", "cdc", "start", "--server-id", "5301"],
                cwd=ROOT,
                env=cli_env(src, rep1, raw1, tables_file),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while not raw_rows(rep1, "SELECT 1 FROM _clinicflow_cdc_state WHERE status = 'running'"):
                time.sleep(0.2)
            rng = random.Random(31)
            started = time.perf_counter()
            _changes(src, args.changes, args.rate, rng)
            generated = time.perf_counter() - started
            while not _caught_up(src, rep1, raw1):
                time.sleep(0.1)
            conn = raw1.connect()
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT EXTRACT(EPOCH FROM arrived - changed_at) FROM public.arrival WHERE changed_at IS NOT NULL"
                )
                lags = sorted(float(r[0]) for r in cur.fetchall())
            conn.close()
            p50 = statistics.median(lags)
            p95 = lags[int(0.95 * (len(lags) - 1))]
            print(
                f"live: {args.changes} changes in {generated:.1f} s; change -> raw lag p50 {p50:.2f} s, "
                f"p95 {p95:.2f} s ({len(lags)} arrivals)",
                flush=True,
            )
            nightly_live_s = _nightly(src, rep2, raw2, config.effective(TABLE))
            print(f"nightly on the same changes: {nightly_live_s:.1f} s (lag: until the next night + that)", flush=True)

            # Quiet: nothing changes; what does the running CDC cost?
            before = _cpu_seconds(proc.pid)
            time.sleep(args.quiet_seconds)
            quiet_cpu = _cpu_seconds(proc.pid) - before
            quiet_hour = quiet_cpu * 3600 / args.quiet_seconds
            print(
                f"quiet: CDC process {quiet_cpu:.2f} CPU s in {args.quiet_seconds:.0f} s "
                f"= {quiet_hour:.0f} CPU s per quiet hour ({quiet_hour / 36:.2f}% of a core)",
                flush=True,
            )
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            proc = None
            started = time.process_time()
            noop_s = _nightly(src, rep2, raw2, config.effective(TABLE))
            print(
                f"anchor: one nightly on no changes {noop_s:.1f} s ({time.process_time() - started:.1f} CPU s "
                f"in this process, the servers' work besides): a quiet CDC hour costs "
                f"{quiet_hour / max(noop_s, 1e-9):.2f}x one quiet night's run time",
                flush=True,
            )

            # Catch-up: the same changes for both, each in one run.
            _changes(src, args.changes, None, rng)
            started = time.perf_counter()
            report = CdcRunner(src, rep1, raw1, config, options).run()
            cdc_s = time.perf_counter() - started
            nightly_s = _nightly(src, rep2, raw2, config.effective(TABLE))
            _equal(src, rep1, raw1, "CDC")
            _equal(src, rep2, raw2, "nightly")
            cdc_rate, nightly_rate = report.events / cdc_s, report.events / nightly_s
            print(
                f"catch-up of {report.events} row events: CDC {cdc_s:.1f} s ({cdc_rate:.0f} events/s), "
                f"incremental nightly {nightly_s:.1f} s ({nightly_rate:.0f} events/s): "
                f"ratio CDC/nightly {cdc_rate / nightly_rate:.1f}x",
                flush=True,
            )
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
            for k in ("rep1", "rep2"):
                admin_mysql(local, f"DROP DATABASE IF EXISTS {names[k]}")
            for k in ("raw1", "raw2"):
                admin_pg(pg_admin, f"DROP DATABASE IF EXISTS {names[k]} WITH (FORCE)")


if __name__ == "__main__":
    main()
