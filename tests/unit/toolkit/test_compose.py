"""Composition semantics (sequential, parallel, conditional, retry, etl) in plain runs and as one Prefect flow."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from clinicflow.core.retry import TransientError
from clinicflow.toolkit.base import RunContext, ToolkitError
from clinicflow.toolkit.compose import conditional, etl, execute, parallel, retry, run_leaf_plain, sequential, step
from clinicflow.toolkit.spec import PipelineSpec


def ok(value: Any = None) -> Any:
    return lambda ctx: value


def boom(message: str = "boom") -> Any:
    def fail(ctx: RunContext) -> None:
        raise ToolkitError(message)

    return fail


def statuses(outcomes: list) -> list[tuple[str, str]]:
    return [(o.name, o.status) for o in outcomes]


def no_sleep_runner(leaf: Any, ctx: RunContext) -> Any:
    return run_leaf_plain(leaf, ctx, sleep=lambda s: None)


def write_csv(path: Path) -> None:
    path.write_text("id,amount\n1,2.5\n2,oops\n3,4\n")


def test_sequential_stops_on_error_or_goes_on() -> None:
    tree = sequential(step("a", ok(1)), step("b", boom()), step("c", ok(3)))
    assert statuses(execute(tree, RunContext())) == [("a", "completed"), ("b", "failed"), ("c", "skipped")]
    tree = sequential(step("a", ok(1)), step("b", boom()), step("c", ok(3)), stop_on_error=False)
    ctx = RunContext()
    assert statuses(execute(tree, ctx)) == [("a", "completed"), ("b", "failed"), ("c", "completed")]
    assert ctx.results == {"a": 1, "c": 3}


def test_parallel_is_bounded_and_runs_everything_by_default() -> None:
    active, peak, lock = [0], [0], threading.Lock()
    pair = threading.Barrier(2, timeout=30)

    def work(ctx: RunContext) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        pair.wait()  # two at once must be possible...
        with lock:
            active[0] -= 1

    tree = parallel(*(step(f"s{i}", work) for i in range(4)), step("bad", boom()), max_workers=2)
    out = execute(tree, RunContext())
    assert statuses(out) == [
        ("s0", "completed"),
        ("s1", "completed"),
        ("s2", "completed"),
        ("s3", "completed"),
        ("bad", "failed"),
    ]
    assert peak[0] == 2  # ...and never more than max_workers


def test_parallel_stop_on_error_skips_steps_not_started() -> None:
    tree = parallel(step("bad", boom()), step("later", ok()), step("last", ok()), max_workers=1, stop_on_error=True)
    assert statuses(execute(tree, RunContext())) == [("bad", "failed"), ("later", "skipped"), ("last", "skipped")]


def test_conditional_branches_and_a_failing_predicate() -> None:
    tree = sequential(
        step("count", ok(5)), conditional(lambda ctx: ctx.results["count"] > 0, step("then", ok()), step("else", ok()))
    )
    assert statuses(execute(tree, RunContext())) == [("count", "completed"), ("then", "completed"), ("else", "skipped")]
    tree = conditional(lambda ctx: 1 / 0, step("then", ok()), name="check")
    out = execute(tree, RunContext())
    assert statuses(out) == [("check", "failed"), ("then", "skipped")]
    assert "ZeroDivisionError" in out[0].error


def test_retry_any_and_transient_only() -> None:
    calls = {"n": 0}

    def flaky(ctx: RunContext) -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransientError("try again")
        return "done"

    out = execute(retry(step("flaky", flaky), 2, delay_seconds=0), RunContext(), no_sleep_runner)
    assert statuses(out) == [("flaky", "completed")]
    assert calls["n"] == 3
    calls["n"] = 0
    assert statuses(execute(retry(step("flaky", flaky), 1, delay_seconds=0), RunContext(), no_sleep_runner)) == [
        ("flaky", "failed")
    ]
    permanent = {"n": 0}

    def wrong(ctx: RunContext) -> None:
        permanent["n"] += 1
        raise ValueError("not transient")

    tree = retry(sequential(step("wrong", wrong)), 3, delay_seconds=0, on="transient")
    assert statuses(execute(tree, RunContext(), no_sleep_runner)) == [("wrong", "failed")]
    assert permanent["n"] == 1


def test_duplicate_step_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="two steps are named 'a'"):
        PipelineSpec(name="dup", steps=[step("a", ok()), parallel(step("a", ok()))])


def test_etl_streams_through_transformers_and_counts(tmp_path: Path) -> None:
    write_csv(tmp_path / "in.csv")
    leaf = etl(
        "copy",
        extract={"kind": "file", "path": str(tmp_path / "in.csv"), "batch_size": 1},
        transform=[{"kind": "types", "mapping": {"id": "int"}}, {"kind": "columns", "rename": {"amount": "value"}}],
        load={"kind": "file", "path": str(tmp_path / "out.jsonl")},
    )
    (outcome,) = execute(leaf, RunContext())
    assert outcome.status == "completed"
    assert outcome.result.rows_read == 3
    assert outcome.result.rows_written == 3
    assert json.loads((tmp_path / "out.jsonl").read_text().splitlines()[1]) == {"id": 2, "value": "oops"}
