"""The OpenDental flows' settings are read when used, not at import; the flows share one chain engine, no flow
module imports another, every flow takes its clinic's block names as parameters, and fan-out children get the
night's options whole."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from blocks.resolve import ANALYTICS_BLOCK, REPLICATION_BLOCK, SOURCE_BLOCK

FLOWS = Path(__file__).resolve().parents[2] / "flows"


@pytest.mark.parametrize(
    ("function", "variable", "default"),
    [
        ("nightly_workers", "CLINICFLOW_NIGHTLY_WORKERS", 4),
        ("replication_workers", "CLINICFLOW_REPLICATION_WORKERS", 4),
        ("small_table_rows", "CLINICFLOW_SMALL_TABLE_ROWS", 1000),
        ("small_group_size", "CLINICFLOW_SMALL_GROUP_SIZE", 25),
    ],
)
def test_int_settings_follow_the_environment_after_import(
    monkeypatch: pytest.MonkeyPatch, function: str, variable: str, default: int
) -> None:
    import flows.nightly  # imported first: a value read at import would stay put
    import flows.replicate  # noqa: F401
    from clinicflow.core import settings

    read = getattr(settings, function)
    monkeypatch.delenv(variable, raising=False)
    assert read() == default
    monkeypatch.setenv(variable, "7")
    assert read() == 7
    monkeypatch.setenv(variable, "seven")
    with pytest.raises(ValueError, match=variable):
        read()


def test_fanout_settings_follow_the_environment_after_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.nightly_fanout  # noqa: F401
    from flows.fanout_runner import concurrency_limit_name
    from flows.tier_fanout import child_deployment

    monkeypatch.delenv("CLINICFLOW_FANOUT_DEPLOYMENT", raising=False)
    monkeypatch.delenv("CLINICFLOW_FANOUT_LIMIT", raising=False)
    assert child_deployment() == "nightly-tables/nightly-tables"
    assert concurrency_limit_name() == "clinicflow-fanout"
    monkeypatch.setenv("CLINICFLOW_FANOUT_DEPLOYMENT", "nightly-tables/clinic-a-tables")
    monkeypatch.setenv("CLINICFLOW_FANOUT_LIMIT", "clinicflow-fanout-clinic-a")
    assert child_deployment() == "nightly-tables/clinic-a-tables"
    assert concurrency_limit_name() == "clinicflow-fanout-clinic-a"
    assert concurrency_limit_name("clinicflow-fanout-clinic-b") == "clinicflow-fanout-clinic-b"


@pytest.mark.parametrize(
    ("flow_module", "flow_name", "variable"),
    [
        ("flows.nightly", "nightly_etl", "CLINICFLOW_NIGHTLY_WORKERS"),
        ("flows.nightly", "load_tables", "CLINICFLOW_NIGHTLY_WORKERS"),
        ("flows.nightly_fanout", "nightly_tables", "CLINICFLOW_NIGHTLY_WORKERS"),
        ("flows.replicate", "replicate_tables", "CLINICFLOW_REPLICATION_WORKERS"),
    ],
)
def test_a_run_sizes_its_task_runner_when_it_starts(
    monkeypatch: pytest.MonkeyPatch, flow_module: str, flow_name: str, variable: str
) -> None:
    import importlib

    flow = getattr(importlib.import_module(flow_module), flow_name)
    monkeypatch.setenv(variable, "3")
    assert flow.task_runner.duplicate()._max_workers == 3  # Prefect duplicates the runner for every run
    monkeypatch.setenv(variable, "9")
    assert flow.task_runner.duplicate()._max_workers == 9


def _defines_flow(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if isinstance(target, ast.Name) and target.id == "flow":
                    return True
    return False


def test_no_flow_module_imports_another_flow_module() -> None:
    trees = {f"flows.{p.stem}": ast.parse(p.read_text(encoding="utf-8")) for p in FLOWS.glob("*.py")}
    flow_modules = {name for name, tree in trees.items() if _defines_flow(tree)}
    assert {"flows.nightly", "flows.nightly_fanout", "flows.replicate"} <= flow_modules
    assert not {"flows.chains", "flows.load_chain", "flows.replication_chain", "flows.tier_fanout"} & flow_modules
    problems = []
    for name in sorted(flow_modules):
        for node in ast.walk(trees[name]):
            imported: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            problems += [f"{name} imports {m}" for m in imported if m in flow_modules and m != name]
    assert not problems


@pytest.mark.parametrize(
    ("module", "runner"),
    [
        ("nightly", "from flows.load_chain import run_tier_tables"),
        ("nightly_fanout", "from flows.load_chain import run_tier_tables"),
        ("replicate", "from flows.replication_chain import"),
    ],
)
def test_the_nightly_and_replicate_flows_share_one_chain_engine(module: str, runner: str) -> None:
    text = (FLOWS / f"{module}.py").read_text(encoding="utf-8")
    assert runner in text, module
    assert "(TierRun)" not in text, module
    assert "def run_tier(" not in text, module


@pytest.mark.parametrize(
    ("flow_module", "flow_name", "expected"),
    [
        (
            "flows.nightly",
            "nightly_etl",
            {
                "source_block": SOURCE_BLOCK,
                "replica_block": REPLICATION_BLOCK,
                "analytics_block": ANALYTICS_BLOCK,
                "concurrency_limit": None,
            },
        ),
        ("flows.nightly", "load_tables", {"replica_block": REPLICATION_BLOCK, "analytics_block": ANALYTICS_BLOCK}),
        ("flows.replicate", "replicate_tables", {"source_block": SOURCE_BLOCK, "replica_block": REPLICATION_BLOCK}),
        (
            "flows.cdc",
            "cdc_opendental",
            {"source_block": SOURCE_BLOCK, "replica_block": REPLICATION_BLOCK, "analytics_block": ANALYTICS_BLOCK},
        ),
    ],
)
def test_flows_take_the_clinic_blocks_as_parameters(
    flow_module: str, flow_name: str, expected: dict[str, object]
) -> None:
    import importlib

    flow = getattr(importlib.import_module(flow_module), flow_name)
    params = inspect.signature(flow.fn).parameters
    assert {name: params[name].default for name in expected if name in params} == expected


def test_fanout_children_get_the_nights_options_whole() -> None:
    from clinicflow.core.options import OptionsError
    from clinicflow.opendental.options import NightlyOptions
    from flows.nightly_fanout import nightly_tables

    night = NightlyOptions.from_values(
        full_refresh=True,
        source_block="clinic-a-source",
        replica_block="clinic-a-replication",
        analytics_block="clinic-a-analytics",
    )
    child = night.for_partition(["patient", "claim"])
    # What the parent hands run_deployment, as Prefect validates it for the child run.
    accepted = nightly_tables.validate_parameters(
        {
            "options": child.model_dump(mode="json"),
            "run_id": "night-1",
            "concurrency_limit": "clinicflow-fanout-clinic-a",
        }
    )
    assert accepted["options"] == child
    assert accepted["options"].source_block == "clinic-a-source"
    assert accepted["options"].load_options().full_refresh
    assert accepted["concurrency_limit"] == "clinicflow-fanout-clinic-a"
    with pytest.raises(ValueError, match="at least one table"):
        night.for_partition([])
    with pytest.raises(OptionsError, match="replica_block is required"):
        NightlyOptions.from_values(source_block="s", analytics_block="a")


def test_a_bad_nightly_mode_names_the_field() -> None:
    from clinicflow.opendental.options import NightlyFanOut
    from flows.nightly import nightly_etl

    with pytest.raises(ValueError, match="mode must be 'in-pod' or 'fanout'"):
        NightlyFanOut.from_values(mode="cluster")
    with pytest.raises(Exception, match="mode"):
        nightly_etl.validate_parameters({"mode": "cluster"})
