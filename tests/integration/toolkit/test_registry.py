"""`clinicflow pipelines sync [--prune]`, `run` and `backfill` against a real local Prefect server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clinicflow.cli import app
from tests.conftest import unique_name

# Syncs (and prunes) pipeline deployments on the shared Prefect server: one worker, in file order.
pytestmark = pytest.mark.xdist_group("toolkit-deployments")

MODULE = """
from datetime import timedelta
from clinicflow.toolkit.compose import step
from clinicflow.toolkit.spec import PipelineSpec, Timescope

def record(ctx):
    with open({out!r}, "a") as out:
        out.write(f"{{ctx.pipeline}} {{ctx.parameters['limit']}} {{ctx.start.isoformat()}} {{ctx.end.isoformat()}}\\n")
    return 1

pipeline = PipelineSpec(name="{name}", steps=[step("record", record)],
                        schedules=[{{"cron": "{cron}", "timezone": "Europe/Paris"}}],
                        timescope=Timescope(window=timedelta(days=1)), parameters={{"limit": 10}})
"""


def write_pipeline(folder: Path, name: str, cron: str = "0 3 * * *", out: Path | None = None) -> None:
    (folder / f"{name.replace('-', '_')}_pipeline.py").write_text(
        MODULE.format(name=name, cron=cron, out=str(out or folder / "runs.txt"))
    )


def client_call(fn: Any) -> Any:
    from prefect import get_client

    async def go() -> Any:
        async with get_client() as client:
            return await fn(client)

    return asyncio.run(go())


@pytest.fixture
def work_pool(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> str:
    from prefect.client.schemas.actions import WorkPoolCreate

    name = unique_name("pool").replace("_", "-")
    client_call(lambda c: c.create_work_pool(WorkPoolCreate(name=name, type="process")))
    monkeypatch.setenv("CLINICFLOW_WORK_POOL", name)
    return name


def deployments(pool: str) -> dict[str, Any]:
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    in_pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))
    found = client_call(lambda c: c.read_deployments(work_pool_filter=in_pool))
    return {d.name: d for d in found}


def test_sync_creates_updates_and_prunes_only_managed_deployments(work_pool: str, tmp_path: Path) -> None:
    from flows.pipeline_registry import MANAGED_TAG

    a, b = unique_name("a").replace("_", "-"), unique_name("b").replace("_", "-")
    write_pipeline(tmp_path, a)
    write_pipeline(tmp_path, b)
    runner = CliRunner()
    first = runner.invoke(app, ["pipelines", "sync", "--folder", str(tmp_path)])
    assert first.exit_code == 0, first.output
    found = deployments(work_pool)
    assert set(found) == {a, b}
    assert MANAGED_TAG in found[a].tags
    assert found[a].entrypoint == "flows/pipeline.py:run_pipeline"
    assert found[a].parameters == {"pipeline": a, "parameters": {"limit": 10}, "folder": str(tmp_path)}
    (schedule,) = found[a].schedules
    assert schedule.schedule.cron == "0 3 * * *"
    assert schedule.schedule.timezone == "Europe/Paris"

    # An unmanaged deployment on the same flow and pool: prune must leave it alone.
    flow_id = found[a].flow_id
    client_call(
        lambda c: c.create_deployment(
            flow_id=flow_id,
            name="hand-made",
            work_pool_name=work_pool,
            entrypoint="flows/pipeline.py:run_pipeline",
            tags=["clinicflow"],
        )
    )
    # A managed pipeline of another pool (another folder synced elsewhere): not this prune's to delete.
    from prefect.client.schemas.actions import WorkPoolCreate

    other_pool, other = unique_name("pool").replace("_", "-"), unique_name("other").replace("_", "-")
    client_call(lambda c: c.create_work_pool(WorkPoolCreate(name=other_pool, type="process")))
    client_call(
        lambda c: c.create_deployment(
            flow_id=flow_id,
            name=other,
            work_pool_name=other_pool,
            entrypoint="flows/pipeline.py:run_pipeline",
            tags=[MANAGED_TAG],
        )
    )

    write_pipeline(tmp_path, a, cron="30 4 * * 1")  # changed schedule
    (tmp_path / f"{b.replace('-', '_')}_pipeline.py").unlink()  # removed from code
    second = runner.invoke(app, ["pipelines", "sync", "--prune", "--folder", str(tmp_path)])
    assert second.exit_code == 0, second.output
    assert f"updated: {a}" in second.output
    assert f"pruned: {b}" in second.output
    found = deployments(work_pool)
    assert set(found) == {a, "hand-made"}
    (schedule,) = found[a].schedules
    assert schedule.schedule.cron == "30 4 * * 1"
    assert set(deployments(other_pool)) == {other}


def test_sync_deploys_the_rest_when_a_module_is_broken_and_nothing_when_the_pool_is_missing(
    work_pool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = unique_name("a").replace("_", "-")
    b = unique_name("b").replace("_", "-")
    write_pipeline(tmp_path, a)
    runner = CliRunner()
    assert runner.invoke(app, ["pipelines", "sync", "--folder", str(tmp_path)]).exit_code == 0
    (tmp_path / f"{a.replace('-', '_')}_pipeline.py").unlink()  # a's module gone, as if it broke
    (tmp_path / "broken_pipeline.py").write_text("import sys\nsys.exit(0)\n")
    write_pipeline(tmp_path, b)
    out = runner.invoke(app, ["pipelines", "sync", "--prune", "--folder", str(tmp_path)])
    assert out.exit_code == 1
    assert "broken_pipeline.py: SystemExit" in out.output
    assert "--prune skipped" in out.output
    assert "1 module(s) not synced" in out.output
    assert set(deployments(work_pool)) == {a, b}  # b synced; a kept: no prune while a module is broken
    (tmp_path / "broken_pipeline.py").unlink()
    monkeypatch.setenv("CLINICFLOW_WORK_POOL", "no-such-pool")
    out = runner.invoke(app, ["pipelines", "sync", "--folder", str(tmp_path)])
    assert out.exit_code == 2
    assert "work pool 'no-such-pool' does not exist" in out.output


def test_run_and_backfill(work_pool: str, tmp_path: Path) -> None:
    name = unique_name("bf").replace("_", "-")
    runs = tmp_path / "runs.txt"
    write_pipeline(tmp_path, name, out=runs)
    runner = CliRunner()
    ran = runner.invoke(
        app,
        [
            "pipelines",
            "run",
            name,
            "--folder",
            str(tmp_path),
            "--param",
            "limit=3",
            "--start",
            "2026-01-01T00:00:00",
            "--end",
            "2026-01-02T00:00:00",
        ],
    )
    assert ran.exit_code == 0, ran.output
    assert runs.read_text() == f"{name} 3 2026-01-01T00:00:00+00:00 2026-01-02T00:00:00+00:00\n"
    runs.unlink()
    today = runner.invoke(app, ["pipelines", "run", name, "--folder", str(tmp_path)])  # the window before now
    assert today.exit_code == 0, today.output
    from datetime import UTC, datetime, timedelta

    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert runs.read_text() == f"{name} 10 {(midnight - timedelta(days=1)).isoformat()} {midnight.isoformat()}\n"
    bad = runner.invoke(app, ["pipelines", "run", name, "--folder", str(tmp_path), "--param", "limt=3"])
    assert bad.exit_code == 2
    assert "unknown parameters ['limt']" in bad.output
    unknown = runner.invoke(app, ["pipelines", "run", "nope", "--folder", str(tmp_path)])
    assert unknown.exit_code == 2
    assert "no pipeline named 'nope'" in unknown.output

    no_deployment = runner.invoke(
        app, ["pipelines", "backfill", name, "--folder", str(tmp_path), "--from", "2026-01-01", "--to", "2026-01-04"]
    )
    assert no_deployment.exit_code == 2
    assert "run `clinicflow pipelines sync` first" in no_deployment.output
    assert runner.invoke(app, ["pipelines", "sync", "--folder", str(tmp_path)]).exit_code == 0
    filled = runner.invoke(
        app, ["pipelines", "backfill", name, "--folder", str(tmp_path), "--from", "2026-01-01", "--to", "2026-01-04"]
    )
    assert filled.exit_code == 0, filled.output
    assert "3 flow runs created" in filled.output

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment_id = deployments(work_pool)[name].id
    flow_runs = client_call(
        lambda c: c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    )
    windows = sorted((r.parameters["start"], r.parameters["end"]) for r in flow_runs if "backfill" in r.tags)
    assert [w[0][:10] for w in windows] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert windows[-1][1][:10] == "2026-01-04"


def test_registry_api_register_get_list_unregister(work_pool: str, tmp_path: Path) -> None:
    from flows.pipeline_registry import get_pipeline, list_pipelines, register_pipeline, unregister_pipeline

    name = unique_name("api").replace("_", "-")
    write_pipeline(tmp_path, name)
    (tmp_path / "plain_pipeline.py").write_text(
        "from clinicflow.toolkit.compose import step\nfrom clinicflow.toolkit.spec import PipelineSpec\n"
        f"pipeline = PipelineSpec(name='{name}-plain', steps=[step('s', lambda ctx: 1)])\n"
    )
    spec = get_pipeline(name, str(tmp_path))
    assert spec.timescope is not None
    assert spec.timescope.window.days == 1
    listed = {p.name: p for p in list_pipelines(str(tmp_path), deployed=True)}
    assert set(listed) == {name, f"{name}-plain"}
    assert listed[name].deployment_id is None
    assert [p.name for p in list_pipelines(str(tmp_path), timescoped=True)] == [name]
    assert [p.name for p in list_pipelines(str(tmp_path), timescoped=False)] == [f"{name}-plain"]

    deployment_id = register_pipeline(spec, folder=str(tmp_path))
    assert deployments(work_pool)[name].id == deployment_id
    assert register_pipeline(name, folder=str(tmp_path)) == deployment_id  # idempotent: an update
    assert {p.name: p.deployment_id for p in list_pipelines(str(tmp_path), deployed=True)}[name] == deployment_id
    with pytest.raises(Exception, match="no pipeline named 'nope'"):
        register_pipeline("nope", folder=str(tmp_path))

    assert unregister_pipeline(name) is True
    assert name not in deployments(work_pool)
    assert unregister_pipeline(name) is False
