"""Dead letters per step and per run, and max_rejected_fraction (no Prefect: run_leaf_plain)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from clinicflow.toolkit.base import RunContext
from clinicflow.toolkit.compose import etl, execute, parallel


def write_csv(path: Path, good: int, bad: int) -> None:
    lines = ["id,amount"] + [f"{i},{i}.5" for i in range(good)] + [f"b{i},oops" for i in range(bad)]
    path.write_text("\n".join(lines) + "\n")


def converting(name: str, source: Path, out: Path, dead: Path, **types: object) -> object:
    return etl(
        name,
        extract={"kind": "file", "path": str(source)},
        transform=[
            {
                "kind": "types",
                "mapping": {"amount": "float"},
                "strict": False,
                "dead_letters": {"path": str(dead)},
                **types,
            }
        ],
        load={"kind": "file", "path": str(out)},
    )


def letters(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_parallel_branches_write_their_own_step_files_in_their_runs_folder(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 0, 2)
    write_csv(tmp_path / "b.csv", 0, 1)
    dead = tmp_path / "dead"
    tree = parallel(
        converting("left", tmp_path / "a.csv", tmp_path / "a.out.csv", dead),
        converting("right", tmp_path / "b.csv", tmp_path / "b.out.csv", dead),
    )
    first = RunContext(pipeline="p", run_id="run-1")
    assert [o.status for o in execute(tree, first)] == ["failed", "failed"]  # 100% rejected
    assert sorted(p.name for p in (dead / "run-1").iterdir()) == ["left.jsonl", "right.jsonl"]
    left = letters(dead / "run-1" / "left.jsonl")
    assert [(x["run_id"], x["step"], x["tool"], x["row_index"], x["column"]) for x in left] == [
        ("run-1", "left", "type_conversion", 0, "amount"),
        ("run-1", "left", "type_conversion", 1, "amount"),
    ]
    assert left[0]["reason"] == "cannot convert to float: ValueError"
    assert left[0]["row"]["id"] == "b0"

    execute(tree, RunContext(pipeline="p", run_id="run-2"))  # a second run: its own files, nothing appended
    assert len(letters(dead / "run-1" / "left.jsonl")) == 2
    assert len(letters(dead / "run-2" / "left.jsonl")) == 2


def test_old_run_folders_are_pruned_to_keep_runs(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 0, 1)
    dead = tmp_path / "dead"
    leaf = etl(
        "s",
        extract={"kind": "file", "path": str(tmp_path / "a.csv")},
        transform=[
            {
                "kind": "types",
                "mapping": {"amount": "float"},
                "strict": False,
                "dead_letters": {"path": str(dead), "keep_runs": 2},
            }
        ],
        load={"kind": "file", "path": str(tmp_path / "o.csv")},
        fail_on_dead_letters=False,
    )
    for i in range(4):
        execute(leaf, RunContext(run_id=f"r{i}"))
        os.utime(dead / f"r{i}", (1_000_000 + i, 1_000_000 + i))
    assert sorted(p.name for p in dead.iterdir()) == ["r2", "r3"]


def test_max_rejected_fraction_decides_completed_with_a_warning_or_failed(tmp_path: Path, caplog) -> None:
    write_csv(tmp_path / "big.csv", 997, 3)  # 3 of 1,000 rejected: 0.3%
    dead = tmp_path / "dead"
    lenient = converting("load_big", tmp_path / "big.csv", tmp_path / "big.out.csv", dead)
    (outcome,) = execute(lenient, RunContext(run_id="default"))
    assert outcome.status == "completed", outcome.error  # default 0.01
    assert outcome.result.dead_letters == 3
    assert outcome.result.rows_written == 997
    assert "3 of 1000 rows went to dead letters, within max_rejected_fraction" in caplog.text
    strict = converting("load_big", tmp_path / "big.csv", tmp_path / "big.out.csv", dead, max_rejected_fraction=0.001)
    (outcome,) = execute(strict, RunContext(run_id="tight"))
    assert outcome.status == "failed"
    assert "3 of 1000 is above max_rejected_fraction 0.001" in (outcome.error or "")
    zero = converting("load_big", tmp_path / "big.csv", tmp_path / "big.out.csv", dead, max_rejected_fraction=0)
    assert execute(zero, RunContext(run_id="zero"))[0].status == "failed"
