"""Bench: the same night in-pod (anchor) and fanned out over 1, 2 and 3 process workers.

A local Prefect server, a process pool, the ``nightly-tables`` deployment from
a process-pool copy of prefect.yaml and the global concurrency limit, set up
with the test suite's PrefectStack (the way tests/deploy/test_fanout_e2e.py
does). Every measured night is a full refresh of the same generated OpenDental
source, so each does the same work. Printed per mode: wall time, ratio to the
in-pod anchor, child runs, and the overhead each child run adds
(clinicflow.scaleout.fanout.overhead_per_child). Each worker runs one child at a time
(one pod); the machine's cores bound what a process pool can show, a cluster
adds a core per pod.

    uv run --frozen python -m bench.bench_fanout [--scale 3] [--workers 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blocks.databases import MySQLServer, PostgresServer  # noqa: E402
from clinicflow.opendental.fanout import plan_table_partitions  # noqa: E402
from clinicflow.opendental.tables.config import load_tables_config  # noqa: E402
from clinicflow.scaleout import fanout  # noqa: E402
from clinicflow_dev import generator  # noqa: E402
from clinicflow_dev.admin import admin_mysql, admin_pg  # noqa: E402
from tests.integration.deploy.e2e_support import (  # noqa: E402
    BIN,
    TEST_IMAGE,
    PrefectStack,
    block_env,
    process_pool_copy_of_prefect_yaml,
    stop,
)
from tests.integration.opendental.warehouse.conftest import tables_yml  # noqa: E402

POOL = "bench-fanout"
LARGE_ROWS = 1000  # tables above this many rows get a partition (child run) of their own


def _parent(stack: PrefectStack, parameters: dict, extra_env: dict[str, str]) -> float:
    script = "import json, sys\nfrom flows.nightly import nightly_etl\nnightly_etl(**json.loads(sys.argv[1]))"
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "python"), "-c", script, json.dumps(parameters)],
        cwd=ROOT,
        env=stack.env(extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"nightly failed ({parameters.get('mode', 'in-pod')}):\n{done.stdout[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=3.0, help="generator scale of the source")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--group-size", type=int, default=25, help="small tables per child run")
    args = parser.parse_args()

    mysql = MySQLServer(host="127.0.0.1", port=3306, username="root", database="")
    pg = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres")
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"bench_fo_{k}_{suffix}" for k in ("src", "rep_in", "rep_fan")}
    pg_names = {k: f"bench_fo_{k}_{suffix}" for k in ("pg_in", "pg_fan")}
    for name in names.values():
        admin_mysql(mysql, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb3")
    for name in pg_names.values():
        admin_pg(pg, f'CREATE DATABASE "{name}"')
    servers = {k: mysql.model_copy(update={"database": v}) for k, v in names.items()}
    servers.update({k: pg.model_copy(update={"database": v}) for k, v in pg_names.items()})
    workers: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        stack = PrefectStack.start(Path(tmp) / "prefect", timeout=300)
        try:
            counts = generator.seed(servers["src"], scale=args.scale)
            config = tables_yml(counts)
            tables_file = Path(tmp) / "tables.yml"
            tables_file.write_text(yaml.safe_dump(config), encoding="utf-8")
            plan = plan_table_partitions(
                load_tables_config(tables_file), sorted(counts), small_rows=LARGE_ROWS, group_size=args.group_size
            )
            children = sum(len(tier) for tier in plan)
            print(
                f"source: {len(counts)} tables, {sum(counts.values())} rows; {children} child runs "
                f"in {len(plan)} tiers (group size {args.group_size})",
                flush=True,
            )
            fan_env = {
                **block_env("opendental-source", servers["src"]),
                **block_env("opendental-replication", servers["rep_fan"]),
                **block_env("analytics-postgres", servers["pg_fan"]),
            }
            stack.create_process_pool(POOL)
            for command in (
                [
                    "clinicflow",
                    "blocks",
                    "setup",
                    "--from-env",
                    "--only",
                    "opendental-source",
                    "--only",
                    "opendental-replication",
                    "--only",
                    "analytics-postgres",
                ],
                ["clinicflow", "fanout", "setup", "--slots", str(max(args.workers))],
            ):
                done = stack.run(command, fan_env)
                assert done.returncode == 0, done.stdout + done.stderr
            copy = process_pool_copy_of_prefect_yaml(Path(tmp) / "prefect.yaml", POOL)
            done = stack.run(
                ["prefect", "--no-prompt", "deploy", "--name", "nightly-tables", "--prefect-file", str(copy)],
                {"CLINICFLOW_IMAGE": TEST_IMAGE},
            )
            assert done.returncode == 0, done.stdout + done.stderr

            common = {"tables_file": str(tables_file), "full_refresh": True}
            env_small = {"CLINICFLOW_SMALL_GROUP_SIZE": str(args.group_size)}
            in_pod_env = {
                "CLINICFLOW_CREDENTIALS": "env",
                **env_small,
                **block_env("opendental-source", servers["src"]),
                **block_env("opendental-replication", servers["rep_in"]),
                **block_env("analytics-postgres", servers["pg_in"]),
            }
            _parent(stack, common, in_pod_env)  # first load (not timed): creates the tables
            anchor = _parent(stack, common, in_pod_env)
            rows = sum(counts.values())
            print(f"in-pod (anchor): {anchor:.1f} s, {rows / anchor:.0f} rows/s", flush=True)
            fan_env_parent = {"CLINICFLOW_CREDENTIALS": "blocks", **env_small}
            for count in sorted(args.workers):
                while len(workers) < count:
                    log = (Path(tmp) / f"worker-{len(workers)}.log").open("wb")
                    workers.append(
                        subprocess.Popen(
                            [
                                str(BIN / "prefect"),
                                "worker",
                                "start",
                                "--pool",
                                POOL,
                                "--type",
                                "process",
                                "--limit",
                                "1",
                            ],
                            env=stack.env({"PREFECT_WORKER_QUERY_SECONDS": "1"}),
                            cwd=ROOT,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                if count == min(args.workers):  # first fan-out load (not timed)
                    _parent(stack, {**common, "mode": "fanout", "fanout_width": count}, fan_env_parent)
                seconds = _parent(stack, {**common, "mode": "fanout", "fanout_width": count}, fan_env_parent)
                overhead = fanout.overhead_per_child(seconds, anchor, children, count)
                print(
                    f"fan-out, {count} worker(s): {seconds:.1f} s, ratio to in-pod {seconds / anchor:.2f}, "
                    f"overhead per child run {overhead:.1f} s",
                    flush=True,
                )
        finally:
            for worker in workers:
                stop(worker)
            stack.close()
            for name in names.values():
                admin_mysql(mysql, f"DROP DATABASE IF EXISTS `{name}`")
            for name in pg_names.values():
                admin_pg(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
