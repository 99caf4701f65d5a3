"""The chunk planner's pure parts: key ranges, keyset predicates, and which engines read key ranges cheaply."""
from __future__ import annotations

import pytest

from clinicflow.chunks import KeyRange, clustered_by_key, keyset_after, keyset_columns, plan_key_ranges


def test_key_ranges_cover_the_span_once_in_batch_size_steps() -> None:
    assert plan_key_ranges(1, 10, 4) == [KeyRange(0, 1, 4), KeyRange(1, 5, 8), KeyRange(2, 9, 10)]
    assert plan_key_ranges(7, 7, 100) == [KeyRange(0, 7, 7)]
    assert plan_key_ranges(None, None, 100) == []
    ranges = plan_key_ranges(-5, 1_000_003, 100_000)
    assert ranges[0].lower == -5 and ranges[-1].upper == 1_000_003
    assert all(a.upper + 1 == b.lower for a, b in zip(ranges, ranges[1:]))
    with pytest.raises(ValueError, match="batch_size"):
        plan_key_ranges(1, 2, 0)


def test_keyset_predicate_is_strictly_after_the_last_key() -> None:
    assert keyset_after(["Stamp", "Id"], None, "mysql") == ("1=1", [])
    sql, params = keyset_after(["Stamp", "Id"], ["2026-01-01", 7], "postgres")
    assert sql == '("Stamp" >= %s AND ("Stamp" > %s OR ("Stamp" = %s AND ("Id" > %s))))'
    assert params == ["2026-01-01", "2026-01-01", "2026-01-01", 7]
    assert keyset_columns(["Stamp"], ["Id", "Stamp"]) == ["Stamp", "Id"]
    with pytest.raises(ValueError, match="2 columns but 1 values"):
        keyset_after(["Stamp", "Id"], ["x"], "mysql")


@pytest.mark.parametrize(("engine", "clustered"), [
    ("InnoDB", True), ("innodb", True), (" InnoDB ", True),
    ("MyISAM", False), ("Aria", False), ("MEMORY", False), ("", False), (None, False)])
def test_only_clustered_engines_read_key_ranges(engine: str | None, clustered: bool) -> None:
    assert clustered_by_key(engine) is clustered
