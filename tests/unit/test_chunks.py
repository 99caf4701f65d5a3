"""The chunk planner's pure parts: key ranges, keyset predicates, and which engines read key ranges cheaply."""

from __future__ import annotations

import pytest

from clinicflow.opendental.chunks import (
    MAX_RANGES,
    ChunkPlanError,
    KeyRange,
    bucket_sql,
    clustered_by_key,
    keyset_after,
    keyset_columns,
    ranges_from_boundaries,
    rows_per_range,
)


def test_ranges_from_boundaries_cover_every_key_once() -> None:
    assert ranges_from_boundaries([]) == [KeyRange(0, None, None)]
    ranges = ranges_from_boundaries([10, 20])
    assert ranges == [KeyRange(0, None, 10), KeyRange(1, 10, 20), KeyRange(2, 20, None)]
    assert [r.label for r in ranges] == ["start..10", "10..20", "20..end"]
    assert ranges[1].predicate("Id", "mysql") == ("`Id` >= %s AND `Id` < %s", [10, 20])
    assert ranges[0].predicate("Id", "postgres") == ('"Id" < %s', [10])
    assert ranges_from_boundaries([])[0].predicate("Id", "mysql") == ("1=1", [])
    # Random 63-bit keys: the number of ranges follows the boundaries given, never the key span.
    huge = ranges_from_boundaries([-(2**62), 2**62, 2**63 - 2])
    assert len(huge) == 4
    assert huge[-1].lower == 2**63 - 2


def test_a_plan_past_the_range_limit_is_refused_before_allocating() -> None:
    with pytest.raises(ChunkPlanError, match="more than the"):
        ranges_from_boundaries(range(MAX_RANGES))
    with pytest.raises(ChunkPlanError, match="must increase"):
        ranges_from_boundaries([5, 5])


def test_rows_per_range_grows_so_the_range_count_stays_bounded() -> None:
    assert rows_per_range(1_000, 100) == 100
    assert rows_per_range(10**9, 100, max_ranges=20_000) == 50_000
    assert rows_per_range(0, 7) == 7
    with pytest.raises(ValueError, match="rows per range must be positive"):
        rows_per_range(10, 0)


def test_bucket_sql_is_the_range_index_on_both_servers() -> None:
    assert bucket_sql("`k`", [], "mysql") == "0"
    assert bucket_sql("`k`", [10, 25, 27], "mysql") == "INTERVAL(`k`, 10, 25, 27)"
    assert bucket_sql('"k"', [10, 25, 27], "postgres") == 'width_bucket("k", ARRAY[10, 25, 27]::bigint[])'
    assert bucket_sql('"k"', [1], "postgres", pg_type="numeric(20)").endswith("::numeric[])")


def test_keyset_predicate_is_strictly_after_the_last_key() -> None:
    assert keyset_after(["Stamp", "Id"], None, "mysql") == ("1=1", [])
    sql, params = keyset_after(["Stamp", "Id"], ["2026-01-01", 7], "postgres")
    assert sql == '("Stamp" >= %s AND ("Stamp" > %s OR ("Stamp" = %s AND ("Id" > %s))))'
    assert params == ["2026-01-01", "2026-01-01", "2026-01-01", 7]
    assert keyset_columns(["Stamp"], ["Id", "Stamp"]) == ["Stamp", "Id"]
    with pytest.raises(ValueError, match="2 columns but 1 values"):
        keyset_after(["Stamp", "Id"], ["x"], "mysql")


@pytest.mark.parametrize(
    ("engine", "clustered"),
    [
        ("InnoDB", True),
        ("innodb", True),
        (" InnoDB ", True),
        ("MyISAM", False),
        ("Aria", False),
        ("MEMORY", False),
        ("", False),
        (None, False),
    ],
)
def test_only_clustered_engines_read_key_ranges(engine: str | None, clustered: bool) -> None:
    assert clustered_by_key(engine) is clustered


def test_inline_predicate_writes_integer_bounds_in() -> None:
    assert KeyRange(3, -5, 2**62).inline_predicate("Id", "mysql") == f"`Id` >= -5 AND `Id` < {2**62}"
    assert KeyRange(0, None, None).inline_predicate("Id", "postgres") == "1=1"


def test_equally_spaced_boundaries_index_by_arithmetic() -> None:
    from clinicflow.opendental.chunks import even_step

    assert even_step([10, 20, 30]) == 10
    assert even_step([10, 20, 35]) is None
    assert even_step([5]) is None
    assert bucket_sql("`k`", [101, 201, 301], "mysql") == "LEAST(GREATEST((`k` - 1) DIV 100, 0), 3)"
    assert bucket_sql('"k"', [101, 201], "postgres") == 'LEAST(GREATEST(("k" - 1) / 100, 0), 2)'
    assert bucket_sql("`k`", [-5, 10], "mysql") == "LEAST(GREATEST((`k` - (-20)) DIV 15, 0), 2)"
    assert bucket_sql('"k"', [101, 201], "postgres", pg_type="numeric(20)").startswith("LEAST(GREATEST(div(")
    # The arithmetic index equals the range index for every key, below, inside and above the boundaries.
    ranges = ranges_from_boundaries([101, 201, 301])
    for k in (-7, 0, 1, 100, 101, 200, 201, 300, 301, 10**6):
        expected = next(
            r.index for r in ranges if (r.lower is None or k >= r.lower) and (r.upper is None or k < r.upper)
        )
        assert min(max(int((k - 1) / 100), 0), 3) == expected, k  # truncating division, as both servers do
