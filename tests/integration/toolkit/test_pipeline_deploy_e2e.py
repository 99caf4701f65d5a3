"""A pipeline written outside the repository, synced to a process pool and run by `prefect deployment run`.

docs/pipelines.md's three steps as a new user takes them, on the session's Prefect
server: the deployment must carry where the code and the pipelines folder are
(a pull step into this checkout, CLINICFLOW_PIPELINES_DIR in its job
variables), and a run with no time scope must take the window before its
scheduled time.
"""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from clinicflow.cli import app
from clinicflow_dev.demo_service import stop_process_group
from tests.conftest import unique_name
from tests.integration.toolkit.test_registry import client_call

BIN = Path(sys.executable).parent

MODULE = '''
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
'''


def worker_env(api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLINICFLOW_PIPELINES"))}
    env.update({"PREFECT_API_URL": api_url, "PREFECT_WORKER_QUERY_SECONDS": "1", "PYTHONUNBUFFERED": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_CLI_PROMPT": "false"})
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
    assert deployment.pull_steps[0]["prefect.deployments.steps.set_working_directory"]["directory"] == \
        str(Path(__file__).resolve().parents[3])

    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
                               "--limit", "1"], env=worker_env(api_url), cwd=elsewhere, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ran = subprocess.run([str(BIN / "prefect"), "deployment", "run", f"toolkit-pipeline/{name}", "--watch",
                              "--watch-timeout", "400"], env=worker_env(api_url), cwd=elsewhere,
                             capture_output=True, text=True, timeout=450)
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
    assert lines[0] in {f"north {(m - timedelta(days=1)).isoformat()} {m.isoformat()}"
                        for m in (midnight, midnight - timedelta(days=1))}
