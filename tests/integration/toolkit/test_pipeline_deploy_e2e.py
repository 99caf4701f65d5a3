"""Synced pipelines run by a worker on a process pool, on the session's Prefect server.

A pipeline written outside the repository, run by `prefect deployment run`
(docs/pipelines.md's three steps as a new user takes them): the deployment must carry
where the code and the pipelines folder are (a pull step into this checkout,
CLINICFLOW_PIPELINES_DIR in its job variables). And the shipped
`procedures-daily` example, run as its schedule runs it: a run with no time
scope takes the window before its scheduled time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from blocks.databases import PostgresServer
from clinicflow.cli import app
from clinicflow.connectors.connections import connected
from clinicflow.toolkit.clickhouse import ClickHouseConnection
from clinicflow_dev.demo_service import stop_process_group
from flows.pipeline_registry import unregister_pipeline
from tests.conftest import unique_name
from tests.integration.deploy.e2e_support import block_env
from tests.integration.toolkit.test_registry import client_call
from tests.integration.toolkit.test_sqldb import pg_exec

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[3]

# Syncs (and prunes) pipeline deployments on the shared Prefect server: one worker, in file order.
pytestmark = pytest.mark.xdist_group("toolkit-deployments")

MODULE = """
from datetime import timedelta
from clinicflow.toolkit.compose import step
from clinicflow.toolkit.spec import PipelineSpec, Timescope

def record(ctx):
    with open({out!r}, "a") as out:
        out.write(f"{{ctx.parameters['clinic']}} {{ctx.start.isoformat()}} {{ctx.end.isoformat()}}\\n")
    return 1

pipeline = PipelineSpec(name="{name}", steps=[step("record", record)],
                        schedules=[{{"cron": "0 3 * * *", "timezone": "America/New_York"}}],
                        timescope=Timescope(window=timedelta(days=1)), parameters={{"clinic": "north"}})
"""


def worker_env(api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLINICFLOW_PIPELINES"))}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_CLI_PROMPT": "false",
        }
    )
    return env


def test_synced_pipeline_outside_the_repo_runs_on_a_process_pool(prefect_server: None, tmp_path: Path) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    api_url = str(PREFECT_API_URL.value())
    pool = unique_name("pipepool").replace("_", "-")
    client_call(lambda c: c.create_work_pool(WorkPoolCreate(name=pool, type="process")))
    name = unique_name("outside").replace("_", "-")
    folder, out, elsewhere = tmp_path / "my-pipelines", tmp_path / "out.txt", tmp_path / "worker-cwd"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "outside_pipeline.py").write_text(MODULE.format(name=name, out=str(out)))

    synced = CliRunner().invoke(app, ["pipelines", "sync", "--folder", str(folder), "--work-pool", pool])
    assert synced.exit_code == 0, synced.output
    deployment = client_call(lambda c: c.read_deployment_by_name(f"toolkit-pipeline/{name}"))
    assert deployment.job_variables["env"]["CLINICFLOW_PIPELINES_DIR"] == str(folder.resolve())
    assert deployment.pull_steps[0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(
        Path(__file__).resolve().parents[3]
    )

    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--limit", "1"],
        env=worker_env(api_url),
        cwd=elsewhere,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ran = subprocess.run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                f"toolkit-pipeline/{name}",
                "--watch",
                "--watch-timeout",
                "400",
            ],
            env=worker_env(api_url),
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=450,
        )
    finally:
        stop_process_group(worker)
        log.close()
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}\n{worker_log[-3000:]}"
    assert "Completed" in ran.stdout
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # The run had no start/end: it took the day before its scheduled time (a run just after midnight may
    # straddle it, so either of the two last days is that day).
    lines = out.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0] in {
        f"north {(m - timedelta(days=1)).isoformat()} {m.isoformat()}" for m in (midnight, midnight - timedelta(days=1))
    }


def start_worker(pool: str, api_url: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--limit", "1"],
            env=worker_env(api_url),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_scheduled_run_of_the_procedures_daily_example_completes(
    prefect_server: None, tmp_path: Path, make_pg_db: Callable[[str], PostgresServer]
) -> None:
    from prefect.client.schemas.actions import DeploymentUpdate, WorkPoolCreate
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Scheduled

    api_url = str(PREFECT_API_URL.value())
    pool = unique_name("dailypool").replace("_", "-")
    client_call(lambda c: c.create_work_pool(WorkPoolCreate(name=pool, type="process")))
    analytics = make_pg_db("analytics")
    pg_exec(
        analytics,
        "CREATE SCHEMA raw",
        'CREATE TABLE raw.procedurelog ("ProcNum" bigint PRIMARY KEY, "ProcDate" date, "ProcFee" double precision,'
        ' "ProcStatus" smallint, "ClinicNum" bigint, "ProvNum" bigint)',
        "INSERT INTO raw.procedurelog SELECT g, date '2026-03-01' + (g % 3), 10 + g % 5, "
        "CASE WHEN g % 10 = 0 THEN 1 ELSE 2 END, g % 2, 7 FROM generate_series(1, 300) g",
    )
    # chDB at a path of its own, opened by the flow run's process only until the run has ended.
    clickhouse = f"chdb://{tmp_path / 'clickhouse'}"

    synced = CliRunner().invoke(app, ["pipelines", "sync", "--folder", str(REPO / "pipelines"), "--work-pool", pool])
    assert synced.exit_code == 0, synced.output
    deployment = client_call(lambda c: c.read_deployment_by_name("toolkit-pipeline/procedures-daily"))
    try:
        variables = dict(deployment.job_variables)
        variables["env"] = {
            **variables["env"],
            "CLINICFLOW_CREDENTIALS": "env",
            "CLINICFLOW_CLICKHOUSE_URL": clickhouse,
            "CLINICFLOW_CLICKHOUSE_DATABASE": "default",
            **block_env("analytics-postgres", analytics),
        }
        client_call(lambda c: c.update_deployment(deployment.id, DeploymentUpdate(job_variables=variables)))
        # What the schedule creates (cron 30 4 * * * America/New_York): a Scheduled run, no start/end. A past
        # time, so the worker takes it at once and the window it decides is not today's.
        scheduled = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
        run = client_call(
            lambda c: c.create_flow_run_from_deployment(deployment.id, state=Scheduled(scheduled_time=scheduled))
        )
        assert "start" not in run.parameters
        assert "end" not in run.parameters

        log = tmp_path / "worker.log"
        worker = start_worker(pool, api_url, tmp_path, log)
        try:
            deadline = time.monotonic() + 400
            while (
                not (state := client_call(lambda c: c.read_flow_run(run.id)).state).is_final()
                and time.monotonic() < deadline
            ):
                time.sleep(1)
        finally:
            stop_process_group(worker)
        assert state.is_completed(), f"{state.type} {state.message}\n{log.read_text(errors='replace')[-3000:]}"
    finally:
        for name in ("procedures-daily", "referral-providers"):  # their schedules stay off the shared server
            unregister_pipeline(name)

    expected = pg_exec(
        analytics,
        'SELECT "ProcDate", "ClinicNum", count(*), sum("ProcFee") FROM raw.procedurelog '
        'WHERE "ProcStatus" = 2 AND "ProcDate" = \'2026-03-02\' GROUP BY 1, 2 ORDER BY 1, 2',
    )
    connection = ClickHouseConnection(url=SecretStr(clickhouse), database="default")
    with connected(connection) as client:
        got = client.query(
            "SELECT day, clinic, procedures, fees FROM procedures_daily FINAL ORDER BY day, clinic"
        ).result_rows
    # Exactly the day before the scheduled time: 2026-03-01 and 2026-03-03 are in raw, not in ClickHouse.
    assert [tuple(r) for r in got] == [(d, c, n, float(f)) for d, c, n, f in expected]
    assert {r[0] for r in got} == {date(2026, 3, 2)}
    assert len(got) == 2
