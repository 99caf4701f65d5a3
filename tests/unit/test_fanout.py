"""Fan-out without Prefect or a database: the nightly's table partitions and reports (clinicflow.opendental.fanout),
keys, rerun decisions and backoff (clinicflow.scaleout.fanout)."""

from __future__ import annotations

import itertools

import pytest

from clinicflow.opendental import fanout as table_fanout
from clinicflow.opendental.tables.config import TablesConfig
from clinicflow.scaleout import fanout


def config_of(tables: dict[str, tuple[int, int]]) -> TablesConfig:
    """name -> (tier, estimated_rows)."""
    return TablesConfig.model_validate(
        {
            "version": 1,
            "tables": {
                name: {"primary_key": ["Id"], "tier": tier, "estimated_rows": rows}
                for name, (tier, rows) in tables.items()
            },
        }
    )


def test_partitions_follow_the_in_pod_grouping_tier_by_tier() -> None:
    config = config_of(
        {
            "patient": (1, 50_000),
            "clinic": (1, 10),
            "definition": (1, 200),
            "procedurelog": (3, 90_000),
            "a": (3, 1),
            "b": (3, 2),
            "c": (3, 3),
        }
    )
    tiers = table_fanout.plan_table_partitions(config, sorted(config.tables), small_rows=1000, group_size=2)
    assert [[(p.name, p.tier, p.tables) for p in tier] for tier in tiers] == [
        [("t1-small-clinic..definition", 1, ("clinic", "definition")), ("t1-patient", 1, ("patient",))],
        [("t3-small-a..b", 3, ("a", "b")), ("t3-small-c", 3, ("c",)), ("t3-procedurelog", 3, ("procedurelog",))],
    ]
    every = [t for tier in tiers for p in tier for t in p.tables]
    assert sorted(every) == sorted(config.tables), "each table in exactly one partition"
    with pytest.raises(ValueError, match="group size"):
        table_fanout.plan_table_partitions(config, ["a"], small_rows=1000, group_size=0)
    # Tables the catalog found unchanged are left out after planning: every partition keeps its name
    # (a rerun finds what its earlier attempt completed), and one left empty is not run at all.
    skipped = table_fanout.without_tables(tiers, {"clinic", "patient", "c", "procedurelog"})
    assert [[(p.name, p.tables) for p in tier] for tier in skipped] == [
        [("t1-small-clinic..definition", ("definition",))],
        [("t3-small-a..b", ("a", "b"))],
    ]
    assert table_fanout.without_tables(tiers, set(config.tables)) == []


def test_child_keys_round_trip_and_differ_per_attempt() -> None:
    assert fanout.child_key("night-1", "t1-patient") == "night-1:t1-patient"
    keys = {fanout.child_key("night-1", "t1-patient", attempt) for attempt in range(3)}
    assert len(keys) == 3
    for attempt in range(3):
        key = fanout.child_key("night-1", "t3-small-a..b", attempt)
        assert fanout.parse_child_key("night-1", key) == ("t3-small-a..b", attempt)
    assert fanout.parse_child_key("night-2", "night-1:t1-patient") is None
    assert fanout.parse_child_key("night-1", None) is None


def child(partition: str, attempt: int, state: str) -> fanout.ChildRun:
    return fanout.ChildRun(partition, attempt, f"id-{partition}-{attempt}", state, state.title())


def test_a_rerun_keeps_completed_waits_for_running_and_retries_only_failed_partitions() -> None:
    latest = fanout.latest_attempts(
        [
            child("a", 0, "FAILED"),
            child("a", 1, "COMPLETED"),
            child("b", 0, "CRASHED"),
            child("c", 0, "RUNNING"),
            child("d", 0, "CANCELLED"),
        ]
    )
    assert {name: fanout.next_action(run) for name, run in latest.items()} == {
        "a": ("keep", 1),
        "b": ("retry", 1),
        "c": ("wait", 0),
        "d": ("retry", 1),
    }
    assert fanout.next_action(None) == ("start", 0)


def test_poll_delays_grow_to_their_cap() -> None:
    delays = list(itertools.islice(fanout.poll_delays(1.0, 2.0, 5.0), 5))
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="need 0 < first <= cap"):
        next(fanout.poll_delays(0, 2, 5))


def test_partition_report_names_failed_and_missing_tables() -> None:
    part = table_fanout.Partition("t3-small-a..c", 3, ("a", "b", "c"))
    ok = table_fanout.report_partition(
        part, child(part.name, 0, "COMPLETED"), {t: {"status": "ok", "rows": 10} for t in part.tables}
    )
    assert (ok.status, ok.rows, ok.failed_tables, ok.error) == ("ok", 30, [], "")
    crashed = fanout.ChildRun(part.name, 1, "x", "CRASHED", "Crashed", "pod lost")
    bad = table_fanout.report_partition(part, crashed, {"a": {"status": "ok", "rows": 5}, "b": {"status": "failed"}})
    assert bad.status == "failed"
    assert bad.failed_tables == ["b", "c"]
    assert "Crashed" in bad.error
    assert "pod lost" in bad.error
    assert "no result for c" in bad.error
    message = table_fanout.failed_partitions_message([ok, bad])
    assert message.startswith("1 of 2 partitions failed: t3-small-a..c (")
    assert table_fanout.failed_partitions_message([ok]) == ""
    assert bad.as_row()["failed_tables"] == "b, c"


def test_overhead_per_child() -> None:
    assert fanout.overhead_per_child(30.0, 10.0, children=8, workers=2) == 5.0
    with pytest.raises(ValueError, match="need at least one child and one worker"):
        fanout.overhead_per_child(1, 1, children=0, workers=1)
