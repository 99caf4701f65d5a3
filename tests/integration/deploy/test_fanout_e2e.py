"""End to end: the nightly fanned out as child deployment runs over three process workers (pods' stand-ins).

One local Prefect server for the module, one process pool, three
`prefect worker start --type process --limit 1` workers, the `nightly-tables`
deployment from a process-pool copy of prefect.yaml, and the global
concurrency limit from `clinicflow fanout setup`. The parent runs as a local
flow run against that server (the `nightly` deployment's code, mode=fanout).
An in-pod night over the same generated OpenDental source, into its own
replica and analytics database, is the reference the fanned-out one must equal
row by row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from blocks.databases import MySQLServer, PostgresServer
from blocks.resolve import ANALYTICS_BLOCK, REPLICATION_BLOCK, SOURCE_BLOCK
from clinicflow.opendental.fanout import plan_table_partitions
from clinicflow.opendental.tables.config import load_tables_config
from clinicflow.scaleout import fanout
from clinicflow_dev import generator
from tests.conftest import unique_name
from tests.integration.deploy.e2e_support import (
    BIN,
    REPO,
    TEST_IMAGE,
    PrefectStack,
    block_env,
    process_pool_copy_of_prefect_yaml,
)
from tests.integration.opendental.warehouse.conftest import pg_query, tables_yml

# One xdist group: its module-wide stack starts once, on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("e2e-fanout"), pytest.mark.timeout(900)]

POOL = "fanout-process"
LARGE = ("patient", "procedurelog")  # one partition each; the rest go in small-table groups
GROUP_SIZE = 10
WORKERS = 3


def seeded_tables_file(counts: dict[str, int], path: Path, extra: dict[str, Any] | None = None) -> Path:
    config = tables_yml(counts)
    for name in LARGE:
        config["tables"][name]["estimated_rows"] = 5000
    config["tables"].update(extra or {})
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class Workers:
    """Process workers on one pool, each one child run at a time (one pod each)."""

    def __init__(self, stack: PrefectStack) -> None:
        self.stack, self.running, self.count = stack, [], 0

    def start(self) -> subprocess.Popen:
        self.count += 1
        log = (self.stack.home / f"worker-{self.count}.log").open("wb")
        worker = subprocess.Popen(
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
                "--name",
                f"pod-{self.count}",
            ],
            env=self.stack.env({"PREFECT_WORKER_QUERY_SECONDS": "1"}),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.stack.started.append(worker)
        self.running.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(
            (self.stack.home / f"worker-{i}.log").read_text(errors="replace")[-3000:] for i in range(1, self.count + 1)
        )


def create_databases(prefixes: list[str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    admin_mysql = MySQLServer(host="127.0.0.1", port=3306, username="root", database="")
    admin_pg = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres")
    created: list[tuple[str, str]] = []
    servers: dict[str, Any] = {}
    conn = admin_mysql.connect(database=None)
    pg = admin_pg.connect()
    pg.autocommit = True
    try:
        for prefix in prefixes:
            name = unique_name(prefix)
            if prefix.endswith("pg"):
                with pg.cursor() as cur:
                    cur.execute(f'CREATE DATABASE "{name}"')
                servers[prefix] = admin_pg.model_copy(update={"database": name})
                created.append(("pg", name))
            else:
                with conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb3")
                servers[prefix] = admin_mysql.model_copy(update={"database": name})
                created.append(("mysql", name))
    finally:
        conn.close()
        pg.close()
    return servers, created


def drop_databases(created: list[tuple[str, str]]) -> None:
    conn = MySQLServer(host="127.0.0.1", port=3306, username="root", database="").connect(database=None)
    pg = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres").connect()
    pg.autocommit = True
    try:
        for kind, name in created:
            if kind == "pg":
                with pg.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()
        pg.close()


@pytest.fixture(scope="module")
def fan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Server, pool, blocks (the fanned-out targets), limit, child deployment, three workers; the in-pod night."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from clinicflow.cli.fanout import ensure_concurrency_limit

    servers, created = create_databases(["fo_src", "fo_rep_inpod", "fo_inpod_pg", "fo_rep_fan", "fo_fan_pg"])
    stack = PrefectStack.start(tmp_path_factory.mktemp("prefect-fanout"), timeout=300)
    try:
        counts = generator.seed(servers["fo_src"], scale=0.01)
        tmp = tmp_path_factory.mktemp("fanout-files")
        tables_file = seeded_tables_file(counts, tmp / "tables.yml")
        fanned_env = {
            **block_env("opendental-source", servers["fo_src"]),
            **block_env("opendental-replication", servers["fo_rep_fan"]),
            **block_env("analytics-postgres", servers["fo_fan_pg"]),
        }
        stack.create_process_pool(POOL)
        done = stack.run(
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
            fanned_env,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        done = stack.run(["clinicflow", "fanout", "setup", "--slots", str(WORKERS)])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "created" in done.stdout, done.stdout + done.stderr
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            assert ensure_concurrency_limit("clinicflow-fanout", WORKERS) == "unchanged"
        copy = process_pool_copy_of_prefect_yaml(tmp / "prefect.yaml", POOL)
        done = stack.run(
            ["prefect", "--no-prompt", "deploy", "--name", "nightly-tables", "--prefect-file", str(copy)],
            {"CLINICFLOW_IMAGE": TEST_IMAGE},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        workers = Workers(stack)
        for _ in range(WORKERS):
            workers.start()
        # The reference: the in-pod night (credentials from the environment, its own targets).
        in_pod_env = {
            "CLINICFLOW_CREDENTIALS": "env",
            **block_env("opendental-source", servers["fo_src"]),
            **block_env("opendental-replication", servers["fo_rep_inpod"]),
            **block_env("analytics-postgres", servers["fo_inpod_pg"]),
        }
        code, log = run_parent(stack, {"tables_file": str(tables_file)}, in_pod_env)
        assert code == 0, log
        yield {
            "stack": stack,
            "servers": servers,
            "counts": counts,
            "tables_file": tables_file,
            "tmp": tmp,
            "workers": workers,
        }
    finally:
        stack.close()
        drop_databases(created)


def run_parent(
    stack: PrefectStack,
    parameters: dict[str, Any],
    extra_env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """A nightly_etl flow run in a subprocess against the stack's server; its exit code and output."""
    process = start_parent(stack, parameters, extra_env)
    out, _ = process.communicate(timeout=420)
    return process.returncode, out


def start_parent(
    stack: PrefectStack, parameters: dict[str, Any], extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    script = "import json, sys\nfrom flows.nightly import nightly_etl\nnightly_etl(**json.loads(sys.argv[1]))"
    env = stack.env(
        {"CLINICFLOW_CREDENTIALS": "blocks", "CLINICFLOW_SMALL_GROUP_SIZE": str(GROUP_SIZE), **(extra_env or {})}
    )
    return subprocess.Popen(
        [str(BIN / "python"), "-c", script, json.dumps(parameters)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def children(stack: PrefectStack, run_key: str) -> list[fanout.ChildRun]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.nightly_fanout import read_children

    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        return read_children(run_key)


def raw_fingerprints(pg: PostgresServer, tables: list[str]) -> dict[str, tuple[int, str]]:
    """Per raw table: row count and the md5 of every row's text, rows in order (row-by-row equality)."""
    sql = "SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) FROM raw.\"{}\" r"
    return {t: tuple(pg_query(pg, sql.format(t))[0]) for t in tables}


def assert_equal_to_in_pod(fan: dict[str, Any]) -> None:
    tables = sorted(fan["counts"])
    expected = raw_fingerprints(fan["servers"]["fo_inpod_pg"], tables)
    assert {t: c for t, (c, _) in expected.items()} == fan["counts"]
    assert raw_fingerprints(fan["servers"]["fo_fan_pg"], tables) == expected


def test_fanned_out_night_equals_the_in_pod_night_row_by_row(fan: dict[str, Any]) -> None:
    code, log = run_parent(
        fan["stack"],
        {"mode": "fanout", "run_key": "night-1", "tables_file": str(fan["tables_file"]), "fanout_width": WORKERS},
    )
    assert code == 0, log + fan["workers"].logs()
    assert_equal_to_in_pod(fan)
    runs = children(fan["stack"], "night-1")
    plan = plan_table_partitions(
        load_tables_config(fan["tables_file"]), sorted(fan["counts"]), small_rows=1000, group_size=GROUP_SIZE
    )
    names = sorted(p.name for tier in plan for p in tier)
    assert sorted(r.partition for r in runs) == names, "one child run per partition, none twice"
    assert {r.state_type for r in runs} == {"COMPLETED"}
    assert {"t1-patient", "t1-procedurelog", "t1-small-appointment"} <= set(names)
    assert len(plan) == 2
    # The parent's run row in PostgreSQL aggregates every child's tables.
    (row,) = pg_query(
        fan["servers"]["fo_fan_pg"],
        "SELECT status, tables_total, tables_failed, rows_loaded FROM clinicflow.etl_runs WHERE run_id = 'night-1'",
    )
    assert row[:3] == ("ok", len(fan["counts"]), 0)
    assert row[3] == sum(fan["counts"].values())
    # A rerun of a completed night starts nothing: every partition is kept.
    code, log = run_parent(
        fan["stack"], {"mode": "fanout", "run_key": "night-1", "tables_file": str(fan["tables_file"])}
    )
    assert code == 0, log
    assert len(children(fan["stack"], "night-1")) == len(runs)
    # Kept partitions, or (the catalog saying no table changed since the good night) no table visited at all.
    assert "completed in an earlier attempt, kept" in log or "tables unchanged on both servers" in log, log


def test_idempotency_key_prevents_a_double_start(fan: dict[str, Any]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.nightly_fanout import CHILD_DEPLOYMENT, start_child

    options = {
        "tables": ["clinic"],
        "tables_file": str(fan["tables_file"]),
        "source_block": SOURCE_BLOCK,
        "replica_block": REPLICATION_BLOCK,
        "analytics_block": ANALYTICS_BLOCK,
    }
    parameters = {"options": options, "run_id": "night-1"}
    with temporary_settings({PREFECT_API_URL: fan["stack"].api_url}):
        first = start_child(CHILD_DEPLOYMENT, "idem-1", "t3-clinic", 0, parameters)
        second = start_child(CHILD_DEPLOYMENT, "idem-1", "t3-clinic", 0, parameters)
    assert first == second
    deadline = time.monotonic() + 180
    runs = children(fan["stack"], "idem-1")
    while not all(r.finished for r in runs) and time.monotonic() < deadline:
        time.sleep(1)
        runs = children(fan["stack"], "idem-1")
    assert [(r.partition, r.state_type) for r in runs] == [("t3-clinic", "COMPLETED")]
    with temporary_settings({PREFECT_API_URL: fan["stack"].api_url}):
        assert start_child(CHILD_DEPLOYMENT, "idem-1", "t3-clinic", 0, parameters) == first  # finished: not again
    assert len(children(fan["stack"], "idem-1")) == 1


def _pid_of(infrastructure_pid: str) -> int:
    return int(str(infrastructure_pid).rsplit(":", 1)[-1])


def _worker_of(pid: int, workers: list[subprocess.Popen]) -> subprocess.Popen:
    """The worker process that (directly or not) started process ``pid``."""
    by_pid = {w.pid: w for w in workers}
    while pid > 1 and pid not in by_pid:
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return by_pid[pid]


def test_sigkill_of_a_worker_mid_run_then_a_rerun_loses_and_duplicates_nothing(fan: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Crashed

    stack, workers = fan["stack"], fan["workers"]
    # Tier 1 in full again: three children at once, one per worker.
    params = {
        "mode": "fanout",
        "run_key": "night-2",
        "full_refresh": True,
        "tables_file": str(fan["tables_file"]),
        "tables": ["appointment", "patient", "procedurelog"],
        "fanout_width": WORKERS,
    }
    # The source's procedurelog is write-locked until the kill, so its child is still running when its pod
    # dies (the demo-sized tables copy in under a second: without it the child could finish first).
    lock = fan["servers"]["fo_src"].connect()
    with lock.cursor() as cur:
        cur.execute("LOCK TABLES procedurelog WRITE")
    try:
        parent = start_parent(stack, params)
        victim = None
        deadline = time.monotonic() + 240
        with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
            while victim is None and time.monotonic() < deadline and parent.poll() is None:
                for child in children(stack, "night-2"):
                    run = client.read_flow_run(child.flow_run_id)
                    if (
                        child.partition.endswith("procedurelog")
                        and child.state_type == "RUNNING"
                        and run.infrastructure_pid
                    ):
                        victim = (child, _pid_of(run.infrastructure_pid))
                        break
                time.sleep(0.3)
            assert victim is not None, "the procedurelog child was not seen running"
            child, pid = victim
            worker = _worker_of(pid, workers.running)
            os.killpg(worker.pid, signal.SIGKILL)  # the pod dies: worker and the child run it executes
            worker.wait(timeout=30)
            workers.running.remove(worker)
            # What Prefect's zombie detection (no heartbeat) does in a cluster: the lost run becomes Crashed.
            client.set_flow_run_state(child.flow_run_id, Crashed(message="pod lost (SIGKILL)"), force=True)
    finally:
        with lock.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        lock.close()
    out, _ = parent.communicate(timeout=420)
    assert parent.returncode != 0, out
    assert child.partition in out, out
    workers.start()  # the replacement pod

    code, log = run_parent(stack, params)
    assert code == 0, log + workers.logs()
    runs = children(stack, "night-2")
    per_partition: dict[str, list[fanout.ChildRun]] = {}
    for run in runs:
        per_partition.setdefault(run.partition, []).append(run)
    assert sorted(r.attempt for r in per_partition[child.partition]) == [0, 1]
    for name, attempts in per_partition.items():
        assert [r.state_type for r in attempts].count("COMPLETED") == 1, f"{name}: completed once, not twice"
        if name != child.partition:
            assert len(attempts) == 1, f"{name} completed on the first try and was not run again"
    assert_equal_to_in_pod(fan)


def test_a_failing_partition_fails_the_parent_by_name_and_the_others_finish(fan: dict[str, Any]) -> None:
    counts = fan["counts"]
    broken = {"no_such_table": {"primary_key": ["Id"], "tier": 3, "estimated_rows": 5000}}
    tables_file = seeded_tables_file(counts, fan["tmp"] / "tables-broken.yml", broken)
    code, log = run_parent(
        fan["stack"],
        {
            "mode": "fanout",
            "run_key": "night-3",
            "tables_file": str(tables_file),
            "tables": ["clinic", "no_such_table"],
        },
    )
    assert code != 0, log
    assert "t3-no_such_table" in log, log
    states = {r.partition: r.state_type for r in children(fan["stack"], "night-3")}
    # clinic runs as its own child, unless the catalog says it is unchanged since its last good night (not visited).
    assert states.pop("t3-no_such_table") == "FAILED", states
    assert states in ({"t3-small-clinic": "COMPLETED"}, {}), states
    statuses = dict(
        pg_query(
            fan["servers"]["fo_fan_pg"],
            "SELECT table_name, status FROM clinicflow.etl_table_metrics WHERE run_id = 'night-3'",
        )
    )
    assert statuses["no_such_table"] == "failed"
    assert statuses["clinic"] in ("ok", "unchanged")
    (row,) = pg_query(fan["servers"]["fo_fan_pg"], "SELECT status FROM clinicflow.etl_runs WHERE run_id = 'night-3'")
    assert row == ("failed",)
