"""scipy ``find_peaks`` over a stream of chunks, equal to one whole-array call (same peaks, same properties).

scipy's steps, each made exact over chunks:

1. **Local maxima** (plateaus included: the peak is the plateau's middle):
   each chunk is searched with the last run of equal values of the chunk
   before and its left neighbour carried in (two values and the run's start
   index, however long the run: a clipped plateau can span chunks).
2. **height**: per peak.
3. **distance**: scipy's own greedy selection (``_select_by_peak_distance``)
   on all candidates at once, so ties are broken exactly as in one call.
4. **prominence** (and the bases ``width`` needs): a second pass with ``halo``
   rows either side of each chunk. With ``wlen`` the search is bounded and the
   halo covers it. Without ``wlen`` scipy searches each side up to the nearest
   strictly higher value; a peak whose nearest higher value lies beyond the
   halo (the tallest peaks, clipped plateaus at saturation) gets its bases in a
   third pass over the whole stream, per distinct peak value.
5. **width**: needs ``wlen`` (validated), so its bases are inside the halo.

Memory: one chunk plus the halo, plus the peak candidates (indices and values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

# scipy's own building blocks of find_peaks: the same code, so the same results (ties included).
from scipy.signal._peak_finding_utils import (
    _local_maxima_1d,
    _peak_prominences,
    _peak_widths,
    _select_by_peak_distance,
)

DEFAULT_HALO = 4096
ChunkSource = Callable[[], Iterator[np.ndarray]]
Progress = Callable[[float], None]


@dataclass(frozen=True)
class PeakOptions:
    height: float | None = None
    distance: int | None = None
    prominence: float | None = None
    width: float | None = None
    wlen: int | None = None
    halo: int | None = None

    def needs_prominences(self) -> bool:
        return self.prominence is not None or self.width is not None

    def halo_rows(self) -> int:
        need = self.wlen // 2 + 2 if self.wlen else 0
        return max(self.halo or DEFAULT_HALO, need)


def local_maxima(
    chunks: Iterator[np.ndarray], height: float | None = None, on_rows: Callable[[int], None] = lambda _n: None
) -> tuple[np.ndarray, np.ndarray, int]:
    """(peak indices, peak values, rows) of the whole stream, as scipy's ``_local_maxima_1d`` + height."""
    found: list[np.ndarray] = []
    values: list[np.ndarray] = []
    carry = np.empty(0)
    run_start = 0  # global index of carry[1] (the trailing run's first value) when carry holds two values
    rows = 0
    work = np.empty(0)  # carry + chunk, reused: a fresh array per chunk would cost its page faults each time
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, dtype=np.float64)
        values_start = rows
        rows += len(chunk)
        on_rows(len(chunk))
        lead = len(carry)
        buffer = chunk
        if lead:
            if len(work) < lead + len(chunk):
                work = np.empty(lead + len(chunk))
            buffer = work[: lead + len(chunk)]
            buffer[:lead], buffer[lead:] = carry, chunk
        shift = values_start - lead  # buffer position -> global index (but the carried run's first value)
        if len(buffer) >= 3:
            mids, lefts, rights = _local_maxima_1d(buffer)
            peak_values = buffer[mids]
            found_g = mids + shift
            if lead == 2 and len(lefts) and lefts[0] == 1:  # position 1 stands for the carried run, begun earlier
                right = values_start - 1 if rights[0] == 1 else int(rights[0]) + shift
                found_g[0] = (run_start + right) // 2
            if height is not None:
                keep = peak_values >= height
                found_g, peak_values = found_g[keep], peak_values[keep]
            found.append(found_g.astype(np.intp, copy=False))
            values.append(peak_values)
        last_run = _last_run_start(buffer)
        if last_run == 0:
            carry = buffer[-1:].copy()  # one run from the array's start (never a peak): its last value only
        elif not (last_run == 1 and lead == 2):
            run_start = last_run + shift
            carry = buffer[last_run - 1 : last_run + 1].copy()
    peaks = np.concatenate(found) if found else np.empty(0, dtype=np.intp)
    heights = np.concatenate(values) if values else np.empty(0)
    return peaks, heights, rows


def _last_run_start(buffer: np.ndarray) -> int:
    """Where the trailing run of equal values begins (0: the whole buffer is one run); NaN is a run of its
    own, as ``buffer[1:] != buffer[:-1]`` says. Looks at a growing tail, not the whole buffer."""
    size = 64
    while True:
        tail = buffer[-size:]
        changes = np.flatnonzero(tail[1:] != tail[:-1])
        if len(changes):
            return len(buffer) - len(tail) + int(changes[-1]) + 1
        if len(tail) == len(buffer):
            return 0
        size *= 16


def find_peaks_stream(
    read: ChunkSource, options: PeakOptions, progress: Progress = lambda _f: None, total_rows: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``scipy.signal.find_peaks(whole_array, height, distance, prominence, width, wlen)`` over ``read()``.

    ``read`` gives a fresh iterator over the chunks on each call (a file is read once, or twice/three
    times when prominences are needed). Properties: peak_heights, prominences, widths as requested.
    """
    passes = 3 if options.needs_prominences() else 1
    done = {"rows": 0}

    def on_rows(count: int) -> None:
        done["rows"] += count
        if total_rows:
            progress(min(1.0, done["rows"] / (total_rows * passes)))

    peaks, heights, rows = local_maxima(read(), options.height, on_rows)
    properties: dict[str, np.ndarray] = {}
    if options.height is not None:
        properties["peak_heights"] = heights
    if options.distance is not None and len(peaks):
        keep = _select_by_peak_distance(peaks, heights.astype(np.float64), np.float64(options.distance))
        peaks, heights = peaks[keep], heights[keep]
        properties = {k: v[keep] for k, v in properties.items()}
    if not options.needs_prominences():
        return peaks, properties
    prominences, widths, unresolved = _halo_pass(read(), peaks, heights, rows, options, on_rows)
    if unresolved.any():
        left_min, right_min = _far_bases(read(), peaks[unresolved], heights[unresolved], on_rows)
        prominences[unresolved] = heights[unresolved] - np.maximum(left_min, right_min)
    properties["prominences"] = prominences
    keep = np.ones(len(peaks), dtype=bool)
    if options.prominence is not None:
        keep &= prominences >= options.prominence
    if options.width is not None:
        properties["widths"] = widths
        keep &= widths >= options.width
    return peaks[keep], {k: v[keep] for k, v in properties.items()}


def _halo_pass(
    chunks: Iterator[np.ndarray],
    peaks: np.ndarray,
    heights: np.ndarray,
    rows: int,
    options: PeakOptions,
    on_rows: Callable[[int], None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prominences (and widths) of ``peaks`` from windows of each chunk plus ``halo`` rows either side;
    ``unresolved`` marks peaks whose nearest higher value is beyond the window (no ``wlen``)."""
    halo = options.halo_rows()
    wlen = np.intp(options.wlen) if options.wlen else np.intp(-1)
    prominences = np.zeros(len(peaks))
    widths = np.zeros(len(peaks))
    unresolved = np.zeros(len(peaks), dtype=bool)
    buffer = np.empty(0)
    buffer_start = 0
    core_start = 0
    at = 0  # first peak not yet handled

    def handle(core_end: int, final: bool) -> None:
        nonlocal at
        stop = int(np.searchsorted(peaks, core_end, side="left"))
        if stop == at:
            return
        lo = max(core_start - halo, buffer_start)
        window = buffer[lo - buffer_start :]
        local = (peaks[at:stop] - lo).astype(np.intp)
        prom, left_bases, right_bases = _peak_prominences(window, local, wlen)
        prominences[at:stop] = prom
        if options.width is not None:
            widths[at:stop] = _peak_widths(window, local, 0.5, prom, left_bases, right_bases)[0]
        if options.wlen is None:
            higher_left = (
                np.maximum.accumulate(window)[local - 1] > heights[at:stop]
                if lo > 0
                else np.ones(len(local), dtype=bool)
            )
            reaches_end = final and lo + len(window) >= rows
            higher_right = (
                np.ones(len(local), dtype=bool)
                if reaches_end
                else np.maximum.accumulate(window[::-1])[::-1][np.minimum(local + 1, len(window) - 1)]
                > heights[at:stop]
            )
            unresolved[at:stop] = ~(higher_left | (lo == 0)) | ~higher_right
        at = stop

    for chunk in chunks:
        on_rows(len(chunk))
        buffer = np.concatenate([buffer, np.asarray(chunk, dtype=np.float64)])
        end = buffer_start + len(buffer)
        while end - core_start >= 2 * halo:
            core_end = end - halo
            handle(core_end, final=False)
            core_start = core_end
            trim = max(core_start - halo, buffer_start) - buffer_start
            buffer, buffer_start = buffer[trim:], buffer_start + trim
    handle(buffer_start + len(buffer), final=True)
    return prominences, widths, unresolved


def _far_bases(
    chunks: Iterator[np.ndarray], peaks: np.ndarray, values: np.ndarray, on_rows: Callable[[int], None]
) -> tuple[np.ndarray, np.ndarray]:
    """For each peak: the minimum between it and the nearest value not ``<=`` its own on the left and on the
    right (or the array's end), as scipy's unbounded prominence search; one pass.

    Per chunk, every distinct peak value at once: a running maximum puts NaN after every number (numpy's
    order), so searching it finds the first and last value not ``<=`` v (NaN included); running minimums
    give the stretches' minimums. Only the peaks inside the chunk are searched one by one."""
    left_min = np.full(len(peaks), np.inf)
    right_min = np.full(len(peaks), np.inf)
    levels, group = np.unique(values, return_inverse=True)
    open_min = np.full(len(levels), np.inf)  # per level: min of the current stretch of values <= it
    pending: dict[int, list[int]] = {}  # level -> peaks waiting for their right stop
    offset = 0
    for chunk in chunks:
        on_rows(len(chunk))
        y = np.asarray(chunk, dtype=np.float64)
        size = len(y)
        if not size:
            continue
        end = offset + size
        first_stop = np.searchsorted(np.maximum.accumulate(y), levels, side="right")
        after_last = size - np.searchsorted(np.maximum.accumulate(y[::-1]), levels, side="right")
        head = np.where(first_stop > 0, np.minimum.accumulate(y)[np.maximum(first_stop - 1, 0)], np.inf)
        suffix_min = np.minimum.accumulate(y[::-1])[::-1]
        tail = np.where(after_last < size, suffix_min[np.minimum(after_last, size - 1)], np.inf)
        for g, waiting in list(pending.items()):
            right_min[waiting] = np.minimum(right_min[waiting], head[g])
            if first_stop[g] < size:
                del pending[g]
        for i in range(int(np.searchsorted(peaks, offset)), int(np.searchsorted(peaks, end))):
            g, q = int(group[i]), int(peaks[i]) - offset
            v = levels[g]
            before = _nearest_stop(y, q, v, -1)
            left_min[i] = y[before + 1 : q + 1].min() if before >= 0 else min(open_min[g], y[: q + 1].min())
            after = _nearest_stop(y, q, v, 1)
            right_min[i] = y[q:after].min()
            if after == size:
                pending.setdefault(g, []).append(i)
        open_min = np.where(first_stop < size, tail, np.minimum(open_min, tail))
        offset = end
    return left_min, right_min


def _nearest_stop(y: np.ndarray, q: int, v: float, direction: int) -> int:
    """The index nearest ``q`` in ``direction`` (-1, 1) whose value is not ``<= v`` (-1 / len(y): none),
    searched in growing windows."""
    size = 256
    while True:
        if direction < 0:
            lo = max(0, q - size)
            stops = np.flatnonzero(~(y[lo:q] <= v))
            if len(stops):
                return lo + int(stops[-1])
            if lo == 0:
                return -1
        else:
            hi = min(len(y), q + 1 + size)
            stops = np.flatnonzero(~(y[q + 1 : hi] <= v))
            if len(stops):
                return q + 1 + int(stops[0])
            if hi == len(y):
                return len(y)
        size *= 8
