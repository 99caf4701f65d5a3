"""Run verdicts as pure functions: 'N of M failed', the nightly's summary and failure, failed children."""

from __future__ import annotations

import pytest

from clinicflow.core.verdicts import Verdict, failed_of
from clinicflow.opendental.metrics import TableOutcome, night_verdict, tables_failed_message
from clinicflow.scaleout.fanout import ChildRun, failed_children_message

LOST = "1 of 3 partitions failed: t0-small-a..b (child run Crashed; pod lost)"


def outcomes(*failed: str) -> list[TableOutcome]:
    names = ["patient", "procedurelog", "appointment"]
    return [
        TableOutcome(
            table=t,
            status="failed" if t in failed else "ok",
            rows=0 if t in failed else 10,
            zero_dates=1,
            nul_bytes=2,
            error=f"{t} broke" if t in failed else None,
        )
        for t in names
    ]


def test_failed_of_names_the_first_failures() -> None:
    assert failed_of([], 4, "tables") is None
    assert failed_of(["a: x", "b: y"], 4, "tables") == "2 of 4 tables failed: a: x; b: y"
    assert failed_of([str(i) for i in range(12)], 20, "tables", limit=3) == "12 of 20 tables failed: 0; 1; 2"
    with pytest.raises(ValueError, match="limit"):
        failed_of(["a"], 1, "tables", limit=0)
    with pytest.raises(ValueError, match="3 tables failed of only 2"):
        failed_of(["a", "b", "c"], 2, "tables")


def test_verdict_status_follows_its_failure() -> None:
    assert Verdict("done").status == "ok"
    assert not Verdict("done").failed
    assert Verdict("done", "1 of 1 tables failed: a: x").status == "failed"


def test_night_all_ok() -> None:
    verdict = night_verdict("nightly_etl", outcomes())
    assert verdict.summary == (
        "nightly_etl: 3 of 3 tables ok, 0 failed; 30 rows loaded, 3 zero dates → NULL, 6 NUL bytes removed"
    )
    assert verdict.failure is None
    assert verdict.status == "ok"
    assert tables_failed_message(outcomes()) is None


def test_night_some_tables_failed() -> None:
    verdict = night_verdict("load_tables", outcomes("procedurelog"))
    assert verdict.summary.startswith("load_tables: 2 of 3 tables ok, 1 failed; 20 rows loaded")
    assert verdict.failure == "1 of 3 tables failed: procedurelog: procedurelog broke"
    assert verdict.status == "failed"
    assert tables_failed_message(outcomes("procedurelog")) == verdict.failure


def test_night_with_a_lost_child_fails_although_every_table_is_ok() -> None:
    """A child run lost after its tables committed: the rerun must retry that partition, so the night fails."""
    verdict = night_verdict("nightly_etl", outcomes(), LOST)
    assert verdict.status == "failed"
    assert verdict.failure == f"3 of 3 tables ok, but {LOST}"
    assert verdict.summary.endswith(f"NUL bytes removed; {LOST}")


def test_night_with_failed_tables_and_a_lost_child_names_both() -> None:
    verdict = night_verdict("nightly_etl", outcomes("patient", "appointment"), LOST)
    assert verdict.status == "failed"
    assert verdict.failure == (f"2 of 3 tables failed: patient: patient broke; appointment: appointment broke ({LOST})")
    assert "1 of 3 tables ok, 2 failed" in verdict.summary
    assert verdict.summary.endswith(LOST)


def test_failed_children_message() -> None:
    done = ChildRun("prefixes-001", 0, "id1", "COMPLETED", "Completed")
    crashed = ChildRun("prefixes-002", 1, "id2", "CRASHED", "Crashed", "Flow run infrastructure exited " + "x" * 300)
    unstarted = ChildRun("prefixes-003", 0, "", "FAILED", "NotStarted", "")
    assert failed_children_message({"prefixes-001": done}, "prefix partitions") is None
    message = failed_children_message(
        {"prefixes-003": unstarted, "prefixes-001": done, "prefixes-002": crashed}, "key ranges"
    )
    assert message is not None
    head, _, rest = message.partition(": ")
    assert head == "2 of 3 key ranges failed"
    first, second = rest.split("; ")
    assert first.startswith("prefixes-002 (child run Crashed: Flow run infrastructure exited x")
    assert first.endswith(")")
    assert len(first) == len("prefixes-002 (child run Crashed: ") + 200 + 1  # the message cut at 200 characters
    assert second == "prefixes-003 (child run NotStarted)"
