"""The DICOM key-range planner without a database: ranks, ranges, whole files, parameters."""

from __future__ import annotations

import datetime

import pytest

from clinicflow.dicom.partitions import FileKeyRange, boundary_ranks, key_ranges


def _plan(keys: list[tuple], partitions: int) -> list[FileKeyRange]:
    """What plan_key_ranges does, with the source's sorted distinct keys in memory."""
    distinct = sorted(set(keys))
    return key_ranges([distinct[r - 1] for r in boundary_ranks(len(distinct), partitions)], files=len(distinct))


ROWS = [("s1", "se1", f"i{i:02d}", f"f{i}.dcm") for i in range(23) for _ in range(1 + i % 3)]  # 1-3 rows per file


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 7, 23, 50])
def test_every_report_row_in_exactly_one_range_and_files_never_split(partitions: int) -> None:
    ranges = _plan(ROWS, partitions)
    assert len(ranges) == min(partitions, 23)
    where: dict[tuple, set[int]] = {}
    for row in ROWS:
        holders = [i for i, r in enumerate(ranges) if r.contains(row)]
        assert len(holders) == 1, (row, holders)
        where.setdefault(row, set()).update(holders)
    assert all(len(h) == 1 for h in where.values())  # all rows of a file in the same range
    sizes = [sum(1 for k in set(ROWS) if r.contains(k)) for r in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert all(sizes)


def test_ends_are_unbounded_so_a_key_added_later_is_still_covered() -> None:
    ranges = _plan(ROWS, 4)
    assert ranges[0].low is None
    assert ranges[-1].high is None
    for late in [("a", "", "", ""), ("s1", "se1", "i05x", "late.dcm"), ("zzz", "", "", "")]:
        assert sum(r.contains(late) for r in ranges) == 1


def test_empty_source_and_one_file() -> None:
    assert boundary_ranks(0, 4) == []
    assert _plan([], 4) == []
    one = _plan([("s", "se", "i", "f.dcm")] * 3, 4)
    assert one == [FileKeyRange(None, None)]


def test_ranks_are_increasing_and_reject_zero_partitions() -> None:
    assert boundary_ranks(10, 3) == [4, 7]
    assert boundary_ranks(5, 5) == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        boundary_ranks(5, 0)


def test_bounds_survive_json_parameters_and_names_follow_the_bounds() -> None:
    bounds = FileKeyRange(("s", 7, datetime.date(2024, 1, 2), "f.dcm"), None)
    parameter = bounds.as_parameter()
    assert parameter == [["s", 7, "2024-01-02", "f.dcm"], None]
    assert FileKeyRange.from_parameter(parameter) == FileKeyRange(("s", 7, "2024-01-02", "f.dcm"), None)
    assert bounds.name(0).startswith("keys-001-")
    assert FileKeyRange(None, ("a", "b", "c", "d")).name(0) != FileKeyRange(None, ("a", "b", "c", "e")).name(0)
    with pytest.raises(ValueError, match="key_range must be"):
        FileKeyRange.from_parameter([None])
