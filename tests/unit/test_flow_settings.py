"""The OpenDental flows' settings are read when used, not at import; the flows share one tier runner, no flow
module imports another, and every flow takes its clinic's block names as parameters."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from blocks.resolve import ANALYTICS_BLOCK, REPLICATION_BLOCK, SOURCE_BLOCK

FLOWS = Path(__file__).resolve().parents[2] / "flows"


@pytest.mark.parametrize(("function", "variable", "default"), [
    ("nightly_workers", "CLINICFLOW_NIGHTLY_WORKERS", 4),
    ("replication_workers", "CLINICFLOW_REPLICATION_WORKERS", 4),
    ("small_table_rows", "CLINICFLOW_SMALL_TABLE_ROWS", 1000),
    ("small_group_size", "CLINICFLOW_SMALL_GROUP_SIZE", 25),
])
def test_int_settings_follow_the_environment_after_import(monkeypatch: pytest.MonkeyPatch, function: str,
                                                          variable: str, default: int) -> None:
    import flows.nightly  # imported first: a value read at import would stay put
    import flows.replicate  # noqa: F401
    from flows import tiers

    read = getattr(tiers, function)
    monkeypatch.delenv(variable, raising=False)
    assert read() == default
    monkeypatch.setenv(variable, "7")
    assert read() == 7
    monkeypatch.setenv(variable, "seven")
    with pytest.raises(ValueError, match=variable):
        read()


def test_fanout_settings_follow_the_environment_after_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.nightly_fanout  # noqa: F401
    from flows import tiers

    monkeypatch.delenv("CLINICFLOW_FANOUT_DEPLOYMENT", raising=False)
    monkeypatch.delenv("CLINICFLOW_FANOUT_LIMIT", raising=False)
    assert tiers.child_deployment() == "nightly-tables/nightly-tables"
    assert tiers.fanout_concurrency_limit() == "clinicflow-fanout"
    monkeypatch.setenv("CLINICFLOW_FANOUT_DEPLOYMENT", "nightly-tables/clinic-a-tables")
    monkeypatch.setenv("CLINICFLOW_FANOUT_LIMIT", "clinicflow-fanout-clinic-a")
    assert tiers.child_deployment() == "nightly-tables/clinic-a-tables"
    assert tiers.fanout_concurrency_limit() == "clinicflow-fanout-clinic-a"


@pytest.mark.parametrize(("flow_module", "flow_name", "variable"), [
    ("flows.nightly", "nightly_etl", "CLINICFLOW_NIGHTLY_WORKERS"),
    ("flows.nightly", "load_tables", "CLINICFLOW_NIGHTLY_WORKERS"),
    ("flows.nightly_fanout", "nightly_tables", "CLINICFLOW_NIGHTLY_WORKERS"),
    ("flows.replicate", "replicate_tables", "CLINICFLOW_REPLICATION_WORKERS"),
])
def test_a_run_sizes_its_task_runner_when_it_starts(monkeypatch: pytest.MonkeyPatch, flow_module: str,
                                                    flow_name: str, variable: str) -> None:
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
    assert "flows.tiers" not in flow_modules
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


def test_the_nightly_and_replicate_flows_share_one_tier_runner() -> None:
    for module in ("nightly", "nightly_fanout", "replicate"):
        text = (FLOWS / f"{module}.py").read_text(encoding="utf-8")
        assert "from flows.tiers import" in text, module
        assert "class _TierRun" not in text, module
        assert "def run_tier(" not in text, module


@pytest.mark.parametrize(("flow_module", "flow_name", "expected"), [
    ("flows.nightly", "nightly_etl", {"source_block": SOURCE_BLOCK, "replica_block": REPLICATION_BLOCK,
                                      "analytics_block": ANALYTICS_BLOCK, "concurrency_limit": None}),
    ("flows.nightly", "load_tables", {"replica_block": REPLICATION_BLOCK, "analytics_block": ANALYTICS_BLOCK}),
    ("flows.nightly_fanout", "nightly_tables", {"source_block": SOURCE_BLOCK, "replica_block": REPLICATION_BLOCK,
                                                "analytics_block": ANALYTICS_BLOCK, "concurrency_limit": None}),
    ("flows.replicate", "replicate_tables", {"source_block": SOURCE_BLOCK, "replica_block": REPLICATION_BLOCK}),
    ("flows.cdc", "cdc_opendental", {"source_block": SOURCE_BLOCK, "replica_block": REPLICATION_BLOCK,
                                     "analytics_block": ANALYTICS_BLOCK}),
])
def test_flows_take_the_clinic_blocks_as_parameters(flow_module: str, flow_name: str,
                                                    expected: dict[str, object]) -> None:
    import importlib

    flow = getattr(importlib.import_module(flow_module), flow_name)
    params = inspect.signature(flow.fn).parameters
    assert {name: params[name].default for name in expected if name in params} == expected


def test_fanout_children_get_the_clinic_blocks_and_limit() -> None:
    from flows.nightly_fanout import nightly_tables
    from flows.tiers import child_parameters

    params = child_parameters(full_refresh=True, skip_verification=False, full_sweep=False, tables_file=None,
                              source_block="clinic-a-source", replica_block="clinic-a-replication",
                              analytics_block="clinic-a-analytics", concurrency_limit="clinicflow-fanout-clinic-a")
    accepted = set(inspect.signature(nightly_tables.fn).parameters)
    assert set(params) | {"tables", "run_id"} <= accepted
    assert params["source_block"] == "clinic-a-source"
    assert params["concurrency_limit"] == "clinicflow-fanout-clinic-a"
