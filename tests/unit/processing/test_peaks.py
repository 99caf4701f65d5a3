"""Chunked peak detection equals one whole-array scipy find_peaks: same peaks, same prominences (widths to
1e-12),
on clipped plateaus (saturation), ties and plateaus across chunk edges, in every chunking."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy.signal import find_peaks

from clinicflow.processing.peaks import PeakOptions, find_peaks_stream


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(3000)
    ppg = np.sin(t / 15.0) * 2 + 0.6 * np.sin(t / 4.0) + rng.normal(0, 0.2, len(t))
    clipped = np.clip(ppg * 1.5, -2.0, 2.0)  # sensor saturation: long equal plateaus at the top
    ties = np.round(ppg, 1)  # many equal peak heights (distance's tie-breaking)
    steps = np.repeat(rng.integers(0, 5, 400), rng.integers(1, 40, 400))  # plateaus of every length
    long_plateau = np.concatenate([np.zeros(50), np.ones(3000), np.zeros(50), ppg[:500]])
    edge_runs = np.concatenate([np.full(700, 3.0), ppg[:800], np.full(900, 3.0)])
    return {
        "ppg": ppg,
        "clipped": clipped,
        "ties": ties,
        "steps": steps.astype(float),
        "long_plateau": long_plateau,
        "edge_runs": edge_runs,
    }


OPTIONS = [
    {},
    {"height": 0.5},
    {"distance": 37},
    {"prominence": 0.3},
    {"prominence": 0.0, "distance": 11},
    {"prominence": 0.5, "wlen": 201, "width": 3.0},
    {"height": 1.0, "distance": 25, "prominence": 0.2},
]
CHUNKINGS = [7, 64, 997, 10**6]


def chunked(values: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@pytest.mark.parametrize("name", list(signals()))
@pytest.mark.parametrize("kwargs", OPTIONS, ids=[str(o) or "plain" for o in OPTIONS])
def test_chunked_equals_whole_array_find_peaks_in_every_chunking(name: str, kwargs: dict) -> None:
    values = signals()[name]
    expected, props = find_peaks(values, **kwargs)
    for size in CHUNKINGS:
        for halo in (None, 5):
            options = PeakOptions(halo=halo, **kwargs)
            got, got_props = find_peaks_stream(lambda size=size: chunked(values, size), options)
            assert got.tolist() == expected.tolist(), (name, size, halo)
            for key in ("peak_heights", "prominences"):
                if key in props:
                    np.testing.assert_array_equal(got_props[key], props[key], err_msg=f"{name} {size} {key}")
            if "widths" in props:  # interpolated in window coordinates: equal to the last bits of a float
                np.testing.assert_allclose(got_props["widths"], props["widths"], rtol=1e-12)


def test_clipped_signal_has_plateau_peaks_far_from_any_higher_value() -> None:
    """The case the halo alone gets wrong: saturated tops have no higher value anywhere."""
    clipped = signals()["clipped"]
    peaks, props = find_peaks(clipped, prominence=0.0)
    assert (clipped[peaks] == 2.0).sum() > 10
    got, got_props = find_peaks_stream(lambda: chunked(clipped, 500), PeakOptions(prominence=0.0, halo=5))
    assert got.tolist() == peaks.tolist()
    np.testing.assert_array_equal(got_props["prominences"], props["prominences"])


@pytest.mark.parametrize("kwargs", [{}, {"height": 0.5}, {"distance": 37}, {"height": 1.0, "distance": 25}])
def test_missing_values_split_runs_as_in_one_call(kwargs: dict) -> None:
    """NaN equals nothing, itself included: each one ends a run (ties and plateaus around gaps, at the end)."""
    rng = np.random.default_rng(3)
    values = np.round(signals()["ppg"], 1)
    values[rng.integers(0, len(values), 200)] = np.nan
    values[1000:1010] = np.nan
    values[-3:] = np.nan
    expected, props = find_peaks(values, **kwargs)
    for size in CHUNKINGS:
        got, got_props = find_peaks_stream(lambda size=size: chunked(values, size), PeakOptions(**kwargs))
        assert got.tolist() == expected.tolist(), size
        if "peak_heights" in props:
            np.testing.assert_array_equal(got_props["peak_heights"], props["peak_heights"])


@pytest.mark.parametrize("kwargs", [{}, {"height": 1.0, "distance": 3}, {"prominence": 0.5}])
def test_uneven_and_empty_chunks_of_small_tied_signals_give_one_calls_peaks(kwargs: dict) -> None:
    """Readers cut where they like (Parquet batches, the last chunk, empty ones): any cut, same peaks."""
    rng = np.random.default_rng(11)
    for _ in range(400):
        values = rng.integers(0, 4, int(rng.integers(0, 60))).astype(float)
        if len(values) > 10 and rng.random() < 0.3:  # a plateau, often across a cut
            start = int(rng.integers(0, len(values) - 5))
            values[start : start + int(rng.integers(1, 25))] = 3.0
        if "prominence" not in kwargs and rng.random() < 0.3:
            values[rng.random(len(values)) < 0.1] = np.nan
        pieces = np.split(values, np.sort(rng.integers(0, len(values) + 1, int(rng.integers(0, 8)))))
        expected, props = find_peaks(values, **kwargs)
        got, got_props = find_peaks_stream(lambda pieces=pieces: iter(pieces), PeakOptions(halo=3, **kwargs))
        assert got.tolist() == expected.tolist(), (values.tolist(), [len(p) for p in pieces])
        for key in ("peak_heights", "prominences"):
            if key in props:
                np.testing.assert_array_equal(got_props[key], props[key])


def test_far_bases_of_a_random_walk_in_uneven_chunks_equal_one_call() -> None:
    """A random walk's tall peaks find their nearest higher value thousands of rows away (beyond any halo)."""
    rng = np.random.default_rng(23)
    values = np.round(np.cumsum(rng.normal(0, 1, 30_000)), 0)
    expected, props = find_peaks(values, prominence=0.0)
    pieces = np.split(values, np.sort(rng.integers(0, len(values) + 1, 9)))
    got, got_props = find_peaks_stream(lambda: iter(pieces), PeakOptions(prominence=0.0, halo=5))
    assert got.tolist() == expected.tolist()
    np.testing.assert_array_equal(got_props["prominences"], props["prominences"])
