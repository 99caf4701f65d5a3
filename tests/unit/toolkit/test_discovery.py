"""Discovery of *_pipeline.py modules: good, broken (reported by name, others still found), duplicates, bad specs."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clinicflow.cli import app
from clinicflow.toolkit.discovery import discover

GOOD = """
from clinicflow.toolkit.compose import step
from clinicflow.toolkit.spec import PipelineSpec

pipeline = PipelineSpec(name="{name}", steps=[step("only", lambda ctx: 1)],
                        schedules=[{{"cron": "0 3 * * *", "timezone": "America/New_York"}}],
                        parameters={{"limit": 10}})
"""


def write(folder: Path, filename: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(text)


def test_good_broken_and_duplicate_modules(tmp_path: Path) -> None:
    write(tmp_path, "orders_pipeline.py", GOOD.format(name="orders"))
    write(tmp_path / "sub", "visits_pipeline.py", GOOD.format(name="visits"))
    write(tmp_path, "broken_pipeline.py", "import not_a_module_anywhere\n")
    write(tmp_path, "empty_pipeline.py", "x = 1\n")
    write(tmp_path, "dup_a_pipeline.py", GOOD.format(name="same"))
    write(tmp_path, "dup_b_pipeline.py", GOOD.format(name="same"))
    write(tmp_path, "badcron_pipeline.py", GOOD.format(name="badcron").replace("0 3 * * *", "0 3 * *"))
    write(tmp_path, "helpers.py", "raise RuntimeError('not a pipeline module: never imported')\n")

    found = discover(tmp_path, entry_points=False)
    assert sorted(found.pipelines) == ["orders", "visits"]
    errors = {Path(e.origin.split(",")[0]).name: e.message for e in found.errors}
    assert errors["broken_pipeline.py"].startswith("ModuleNotFoundError: No module named 'not_a_module_anywhere'")
    assert "exposes no `pipeline`" in errors["empty_pipeline.py"]
    assert "discovery.py" not in errors["empty_pipeline.py"]  # a line of the library is no help to its author
    assert errors["dup_a_pipeline.py"] == "duplicate pipeline name 'same'"
    assert "must have 5 fields" in errors["badcron_pipeline.py"]
    assert "Value error," not in errors["badcron_pipeline.py"]
    assert len(found.errors) == 4


def test_missing_folder_is_an_error_when_asked_for(tmp_path: Path) -> None:
    found = discover(tmp_path / "nope", entry_points=False)
    assert not found.pipelines
    assert "does not exist" in found.errors[0].message


def test_cli_list_and_show(tmp_path: Path) -> None:
    write(tmp_path, "orders_pipeline.py", GOOD.format(name="orders"))
    runner = CliRunner()
    listed = runner.invoke(app, ["pipelines", "list", "--folder", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "orders" in listed.output
    assert "America/New_York" in listed.output
    shown = runner.invoke(app, ["pipelines", "show", "orders", "--folder", str(tmp_path)])
    assert shown.exit_code == 0
    assert "- only" in shown.output
    write(tmp_path, "broken_pipeline.py", "raise ValueError('bad config')\n")
    listed = runner.invoke(app, ["pipelines", "list", "--folder", str(tmp_path)])
    assert listed.exit_code == 1
    assert "broken_pipeline.py: ValueError: bad config" in listed.output
    assert "orders" in listed.output  # the broken module hides nothing
    missing = runner.invoke(app, ["pipelines", "show", "nope", "--folder", str(tmp_path)])
    assert missing.exit_code == 2
    assert "no pipeline named 'nope'" in missing.output


def test_entry_point_group_is_discovered(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "ep_pipelines_mod.py", GOOD.format(name="from-entry-point"))
    dist = tmp_path / "ep_pipelines-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-pipelines\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[clinicflow.pipelines]\ngood = ep_pipelines_mod:pipeline\nbroken = ep_pipelines_missing:pipeline\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "empty").mkdir()
    found = discover(tmp_path / "empty", entry_points=True)
    assert "from-entry-point" in found.pipelines
    assert any("entry point broken" in e.origin and "ModuleNotFoundError" in e.message for e in found.errors)


def test_modules_that_exit_or_interrupt_at_import_are_reported_by_file(tmp_path: Path) -> None:
    write(tmp_path, "orders_pipeline.py", GOOD.format(name="orders"))
    write(tmp_path, "exits_pipeline.py", "import sys\nsys.exit(0)\n")
    write(tmp_path, "interrupt_pipeline.py", "raise KeyboardInterrupt\n")
    write(tmp_path, "base_pipeline.py", "raise BaseException('odd')\n")
    found = discover(tmp_path, entry_points=False)
    assert sorted(found.pipelines) == ["orders"]
    errors = {Path(e.origin).name: e.message for e in found.errors}
    assert errors["exits_pipeline.py"].startswith("SystemExit: 0 (line 2")
    assert errors["interrupt_pipeline.py"].startswith("KeyboardInterrupt")
    assert errors["base_pipeline.py"].startswith("BaseException: odd")
    listed = CliRunner().invoke(app, ["pipelines", "list", "--folder", str(tmp_path)])
    assert listed.exit_code == 1
    assert "exits_pipeline.py: SystemExit" in listed.output
    assert "orders" in listed.output


def test_the_pool_type_decides_where_a_synced_deployment_finds_its_code(tmp_path: Path) -> None:
    from flows.pipeline_registry import CHECKOUT_ROOT, code_location

    local = code_location("process", str(tmp_path))
    assert local.folder == str(tmp_path.resolve())
    assert local.job_variables == {
        "working_dir": str(CHECKOUT_ROOT),
        "env": {"CLINICFLOW_PIPELINES_DIR": str(tmp_path.resolve())},
    }
    assert local.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(CHECKOUT_ROOT)}}]
    # On an image-based pool: prefect.yaml's pipeline job variables, the image from CLINICFLOW_IMAGE (a synced
    # deployment had only the pipelines folder: Prefect's own image, no /app, no Secrets, no credentials mode).
    import pytest

    from clinicflow.toolkit.base import ToolkitError

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CLINICFLOW_IMAGE", raising=False)
        with pytest.raises(ToolkitError, match="set CLINICFLOW_IMAGE"):
            code_location("kubernetes", str(tmp_path))
        patch.setenv("CLINICFLOW_IMAGE", "registry.example.com/clinicflow:9.9")
        k8s = code_location("kubernetes", str(tmp_path))
        assert k8s.folder is None
        variables = k8s.job_variables
        assert variables["image"] == "registry.example.com/clinicflow:9.9"
        assert variables["env"]["CLINICFLOW_CREDENTIALS"] == "env"
        assert variables["env"]["CLINICFLOW_PIPELINES_DIR"] == "/app/pipelines"
        assert {"secretRef": {"name": "clinicflow-analytics-postgres"}} in variables["env_from"]
        assert variables["memory_limit"]
        assert variables["active_deadline_seconds"]
        assert k8s.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}]
        assert code_location("kubernetes", None, "/mnt/pipelines").job_variables["env"]["CLINICFLOW_PIPELINES_DIR"] == (
            "/mnt/pipelines"
        )


def test_a_schedule_prefect_refuses_is_named_by_the_first_line_of_its_error() -> None:
    import pytest

    from clinicflow.toolkit.base import ToolkitError
    from clinicflow.toolkit.compose import step
    from clinicflow.toolkit.spec import CronSchedule, PipelineSpec
    from flows.pipeline_registry import prefect_schedules

    bad = CronSchedule.model_construct(cron="61 * * * *", timezone="UTC", active=True)  # past the spec's own check
    spec = PipelineSpec(name="p", steps=[step("a", lambda ctx: None)], schedules=[bad])
    with pytest.raises(ToolkitError) as caught:
        prefect_schedules(spec)
    assert str(caught.value) == "pipeline p: schedule 1 is invalid: 1 validation error for CronSchedule"


def test_show_names_each_nested_choice_even_where_it_is_the_default() -> None:
    from clinicflow.cli.pipelines import resolved_configs
    from clinicflow.toolkit.compose import etl
    from clinicflow.toolkit.spec import PipelineSpec

    spec = PipelineSpec(
        name="appointments",
        parameters={"api_url": "http://127.0.0.1:8799"},
        steps=[
            etl(
                "fetch",
                extract={
                    "kind": "http",
                    "url": "{api_url}/appts",
                    "pagination": {"style": "cursor", "cursor_path": "meta.next"},
                },
                load={"kind": "console"},
            )
        ],
    )
    (extract, load) = resolved_configs(spec)
    assert extract == (
        'fetch extract: {"kind": "http", "url": "http://127.0.0.1:8799/appts", '
        '"pagination": {"style": "cursor", "cursor_path": "meta.next"}}'
    )
    assert load == 'fetch load: {"kind": "console"}'
