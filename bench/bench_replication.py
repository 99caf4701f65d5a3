"""Bench: full and incremental replication of a procedurelog-shaped table (36 columns), MySQL → MySQL.

In the same run, on the same rows:

* **project**: the ``replicate_tables`` flow (server-side row encoding, parallel
  key ranges, ``LOAD DATA LOCAL INFILE`` into a shadow table, atomic swap);
* **anchor**: ``mysqldump --quick <src> procedurelog | mysql <other db>``.

Then 0.1% of the rows change and the project's incremental run is timed
against its own full copy (aim: under 5%).

    uv run --frozen python -m bench.bench_replication [--rows 1000000] [--batch 50000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from clinicflow.connectors.mysql.checksums import table_checksum
from clinicflow.connectors.mysql.sessions import raw_connection
from clinicflow.opendental.replication.copy_plan import ensure_database
from flows.runtime import flow_run_settings, prepare_embedded_environment

# Before Prefect is imported, as the CLI does (embedded server settings).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
prepare_embedded_environment()
# These two import Prefect, which must see the settings set just above.
from blocks.databases import MySQLServer  # noqa: E402
from clinicflow_dev import generator  # noqa: E402


def _recreate(server: MySQLServer) -> None:
    conn = server.connect(database="")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{server.database}`")
    conn.close()
    ensure_database(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]  # parallel runs on one server never share a database
    src, dst, dump_dst = (
        MySQLServer(database=f"{n}_{tag}") for n in ("cf_bench_rsrc", "cf_bench_rdst", "cf_bench_rdump")
    )
    for server in (src, dst, dump_dst):
        _recreate(server)
    t = time.perf_counter()
    generator.create_procedurelog_like(src, args.rows)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.1f}s")

    os.environ.update(
        CLINICFLOW_CREDENTIALS="env",
        CLINICFLOW_OPENDENTAL_SOURCE_DATABASE=src.database,
        CLINICFLOW_OPENDENTAL_REPLICATION_DATABASE=dst.database,
        CLINICFLOW_REPLICATION_WORKERS=str(args.workers),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    tables_file = Path(tempfile.mkdtemp()) / "tables.yml"
    tables_file.write_text(
        yaml.safe_dump(
            {
                "tables": {
                    "procedurelog": {
                        "primary_key": ["ProcNum"],
                        "extraction_strategy": "incremental_chunked",
                        "incremental_columns": ["DateTStamp"],
                        "batch_size": args.batch,
                    },
                    "definition": {"primary_key": ["DefNum"]},
                }
            }
        )
    )
    conn = raw_connection(src)
    with conn.cursor() as cur:  # a tiny table to start Prefect's embedded server outside the timings
        cur.execute(
            "CREATE TABLE definition (DefNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            "ItemName varchar(10)) ENGINE=MyISAM"
        )
        cur.execute("INSERT INTO definition (ItemName) VALUES ('a')")
    conn.close()

    from flows.replicate import replicate_tables as replicate_flow

    def replicate_tables(**params: object) -> None:
        with flow_run_settings():  # as `clinicflow replicate` runs it
            replicate_flow(**params)

    replicate_tables(tables=["definition"], tables_file=str(tables_file))
    t = time.perf_counter()
    replicate_tables(tables=["procedurelog"], tables_file=str(tables_file))
    project_s = time.perf_counter() - t
    assert table_checksum(dst, "procedurelog") == table_checksum(src, "procedurelog"), "project copy differs"

    t = time.perf_counter()
    subprocess.run(
        f"mysqldump -uroot -h127.0.0.1 --quick {src.database} procedurelog"
        f" | mysql -uroot -h127.0.0.1 {dump_dst.database}",
        shell=True,
        check=True,
    )
    dump_s = time.perf_counter() - t
    assert table_checksum(dump_dst, "procedurelog")[0] == args.rows

    changed = max(1, args.rows // 1000)
    generator.apply_changes(src, "procedurelog", updates=changed)
    t = time.perf_counter()
    replicate_tables(tables=["procedurelog"], tables_file=str(tables_file))
    incremental_s = time.perf_counter() - t
    assert table_checksum(dst, "procedurelog") == table_checksum(src, "procedurelog"), "incremental copy differs"

    project_rate, dump_rate = args.rows / project_s, args.rows / dump_s
    print(f"rows: {args.rows:,}  chunk: {args.batch:,}  workers: {args.workers}")
    print(f"project full copy      : {project_s:7.1f}s  {project_rate:10,.0f} rows/s")
    print(f"mysqldump --quick|mysql: {dump_s:7.1f}s  {dump_rate:10,.0f} rows/s")
    print(f"ratio project/dump     : {project_rate / dump_rate:.2f}x (aim >= 1.5x)")
    print(
        f"incremental, {changed:,} rows changed: {incremental_s:.1f}s = "
        f"{100 * incremental_s / project_s:.1f}% of the full copy (aim < 5%)"
    )
    for server in (src, dst, dump_dst):
        c = server.connect(database="")
        with c.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{server.database}`")
        c.close()


if __name__ == "__main__":
    main()
