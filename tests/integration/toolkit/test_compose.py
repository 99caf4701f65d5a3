"""Composition semantics (sequential, parallel, conditional, retry, etl) in plain runs and as one Prefect flow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from clinicflow.core.retry import TransientError
from clinicflow.toolkit.base import RunContext, ToolkitError
from clinicflow.toolkit.compose import el, etl, parallel, retry, sequential, step
from clinicflow.toolkit.spec import PipelineSpec
from tests.unit.toolkit.test_compose import boom, ok, write_csv

# --- as one Prefect flow ------------------------------------------------------------------------


def task_runs_of(flow_run_id: Any) -> dict[str, str]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> dict[str, str]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return {r.name.rsplit("-", 1)[0]: r.state.type.value for r in runs}

    return asyncio.run(read())


def test_prefect_flow_runs_each_leaf_as_a_task_and_fails_when_a_step_fails(prefect_server: None) -> None:
    from flows.pipeline import PipelineFailed, compile_flow

    spec = PipelineSpec(
        name="semantics",
        steps=sequential(
            parallel(step("left", ok(1)), step("right", ok(2)), max_workers=2),
            step("breaks", boom("the source is gone")),
            step("never", ok()),
        ),
    )
    state = compile_flow(spec)(return_state=True)
    assert state.is_failed()
    with pytest.raises(
        PipelineFailed, match=r"1 of 4 steps failed: breaks: ToolkitError: the source is gone; 1 skipped"
    ):
        state.result()
    runs = task_runs_of(state.state_details.flow_run_id)
    assert runs == {"left": "COMPLETED", "right": "COMPLETED", "breaks": "FAILED"}


def test_prefect_task_retries_then_succeeds(prefect_server: None) -> None:
    from flows.pipeline import compile_flow

    calls = {"n": 0}

    def flaky(ctx: RunContext) -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransientError("blip")
        return calls["n"]

    spec = PipelineSpec(name="retrying", steps=[retry(step("flaky", flaky), 2, delay_seconds=0, on="transient")])
    state = compile_flow(spec)(return_state=True)
    assert state.is_completed(), state.message
    assert state.result()[0]["status"] == "completed"
    assert calls["n"] == 3


def test_prefect_lenient_etl_loads_good_rows_dead_letters_bad_ones_and_fails(
    prefect_server: None, tmp_path: Path
) -> None:
    from flows.pipeline import PipelineFailed, compile_flow

    write_csv(tmp_path / "in.csv")
    dead = tmp_path / "dead"
    spec = PipelineSpec(
        name="lenient",
        parameters={"note": "x"},
        steps=[
            etl(
                "convert",
                extract={"kind": "file", "path": str(tmp_path / "in.csv")},
                transform=[
                    {
                        "kind": "types",
                        "mapping": {"id": "int", "amount": "decimal"},
                        "strict": False,
                        "dead_letters": {"kind": "jsonl", "path": str(dead)},
                    }
                ],
                load={"kind": "file", "path": str(tmp_path / "out.csv")},
            ),
            el(
                "after",
                extract={"kind": "file", "path": str(tmp_path / "in.csv")},
                load={"kind": "file", "path": str(tmp_path / "copy.csv")},
            ),
        ],
    )
    state = compile_flow(spec)(return_state=True)
    assert state.is_failed()
    with pytest.raises(PipelineFailed, match="convert: DeadLettersWritten: convert: 1 rows went to dead letters"):
        state.result()
    assert (tmp_path / "out.csv").read_text() == "id,amount\n1,2.5\n3,4\n"
    (run_folder,) = dead.iterdir()
    assert run_folder.name == str(state.state_details.flow_run_id)  # the Prefect run id
    (letter,) = [json.loads(line) for line in (run_folder / "convert.jsonl").read_text().splitlines()]
    assert letter["row_index"] == 1
    assert letter["column"] == "amount"
    assert letter["row"]["id"] == "2"
    assert letter["run_id"] == run_folder.name
    assert letter["step"] == "convert"
    assert not (tmp_path / "copy.csv").exists()  # stop_on_error: the next step was skipped
    with pytest.raises(ToolkitError, match=r"unknown parameters \['typo'\]"):
        compile_flow(spec)(parameters={"typo": 1})
