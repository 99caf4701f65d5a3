"""Full-resolution series of a result, their CSV export, and min-max downsampling of a visible range.

A result row keeps an overview of its series (``max_points``); the full-resolution
series are rebuilt from the data file with the processor's own streamed code
(the input columns as they are, a rolling mean with :class:`StreamingRollingMean`)
and cached as ``.npy`` files, one per column, so that

- the CSV and JSON exports stream every row, and
- the chart asks for the range it shows at about two points per pixel, chosen by
  MinMaxLTTB (tsdownsample): the extremes of every bucket survive, so spikes and
  peaks are drawn, and each listed peak's own row is always among the points.

The cache is bounded (least recently used folders are removed past ``max_bytes``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clinicflow.processing.axis import as_axis, epoch_units_per_second
from clinicflow.processing.base import ProcessingError
from clinicflow.processing.datafiles import DEFAULT_CHUNK_ROWS, iter_chunks
from clinicflow.processing.export import neutralise, result_csv_chunks, series_columns

# Types whose result is a series over the data file's rows (the others export their own table).
SERIES_TYPES = ("rolling_mean", "peak_detection")
DEFAULT_POINTS = 2000
MAX_POINTS = 20_000
# More peaks than this in view are counted, not marked (zoom in to see them).
MAX_MARKERS = 2000
INDEX = "row"


@dataclass(frozen=True)
class SeriesSpec:
    """What a result draws: its x column, its series (name -> (column, derived)), its peaks' rows."""

    x: str | None
    series: dict[str, tuple[str, str]]  # label -> (input column, "values" | "rolling_mean")
    peaks: np.ndarray
    window: int | None = None


def series_spec(row: dict[str, Any], data_file: dict[str, Any], x: str | None) -> SeriesSpec:
    data = row.get("result_data") or {}
    kind = row.get("processing_type")
    if kind not in SERIES_TYPES or not data or row.get("status") != "COMPLETED":
        raise ProcessingError(f"result {row.get('id')} has no series to draw ({kind}, {row.get('status')})")
    names = [c["name"] for c in data_file["columns"]]
    if x is not None and x != INDEX and x not in names:
        raise ProcessingError(f"x: {data_file['name']} has no column {x!r}")
    series: dict[str, tuple[str, str]] = {}
    peaks = np.empty(0, dtype=np.int64)
    window = None
    if kind == "rolling_mean":
        window = int(data["window"])
        for column in series_columns(data):
            series[column] = (column, "values")
            series[f"{column} rolling mean ({window})"] = (column, "rolling_mean")
    else:
        series[data["column"]] = (data["column"], "values")
        peaks = np.array([p["index"] for p in data["peaks"]], dtype=np.int64)
    return SeriesSpec(x=None if x == INDEX else x, series=series, peaks=peaks, window=window)


class SeriesCache:
    """Full-resolution columns of data files and results as ``.npy`` files under ``root`` (bounded, LRU)."""

    def __init__(self, root: Path, download: Callable[[str, Path], None], max_bytes: int) -> None:
        self.root = root
        self.download = download
        self.max_bytes = max_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _folder(self, key: str, build: Callable[[Path], None]) -> Path:
        folder = self.root / key
        with self._lock(key):
            if not folder.exists():
                staging = Path(tempfile.mkdtemp(prefix=".build-", dir=self.root))
                try:
                    build(staging)
                    staging.rename(folder)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
                self._evict(keep=folder)
        os.utime(folder)
        return folder

    def _evict(self, keep: Path) -> None:
        folders = [f for f in self.root.iterdir() if f.is_dir() and not f.name.startswith(".") and f != keep]
        sizes = {f: sum(p.stat().st_size for p in f.iterdir()) for f in folders}
        total = sum(sizes.values()) + sum(p.stat().st_size for p in keep.iterdir())
        for folder in sorted(folders, key=lambda f: f.stat().st_mtime):
            if total <= self.max_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= sizes[folder]

    def columns(self, data_file: dict[str, Any], wanted: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """(the input columns ``wanted`` at full resolution, memory-mapped; their kinds: a time column in
        epoch seconds is "time")."""
        key = "file-" + hashlib.sha256(json.dumps([data_file["sha256"], sorted(wanted)]).encode()).hexdigest()[:32]

        def build(folder: Path) -> None:
            rows = int(data_file["row_count"])
            local = folder / "data"
            self.download(data_file["object_name"], local)
            outputs = {
                c: np.lib.format.open_memmap(folder / f"{i}.npy", mode="w+", dtype=np.float64, shape=(rows,))
                for i, c in enumerate(wanted)
            }
            kinds: dict[str, str] = {}
            epochs: dict[str, float | None] = {}  # decided on the first chunk, kept for the column's every chunk
            at = 0
            for chunk in iter_chunks(
                local, data_file["format"], columns=wanted, chunk_rows=DEFAULT_CHUNK_ROWS, name=data_file["name"]
            ):
                for column in wanted:
                    if column not in epochs:
                        epochs[column] = epoch_units_per_second(chunk[column], column)
                    values, kinds[column] = as_axis(chunk[column], column, epochs[column])
                    outputs[column][at : at + len(values)] = values
                at += len(chunk)
            for output in outputs.values():
                output.flush()
            local.unlink()
            (folder / "columns.json").write_text(json.dumps({"columns": wanted, "kinds": kinds}))

        folder = self._folder(key, build)
        meta = json.loads((folder / "columns.json").read_text())
        arrays = {c: np.load(folder / f"{i}.npy", mmap_mode="r") for i, c in enumerate(meta["columns"])}
        return arrays, {c: meta["kinds"].get(c, "numeric") for c in meta["columns"]}

    def rolling_mean(self, data_file: dict[str, Any], row: dict[str, Any], column: str) -> np.ndarray:
        """The result's rolling mean of ``column`` at full resolution, streamed by the processor's own code."""
        from clinicflow.processing.processors import RollingMeanParams, StreamingRollingMean

        params = RollingMeanParams.model_validate(row["parameters"])
        key = (
            "mean-"
            + hashlib.sha256(
                json.dumps([data_file["sha256"], column, params.window, params.min_periods, params.center]).encode()
            ).hexdigest()[:32]
        )
        values = self.columns(data_file, [column])[0][column]

        def build(folder: Path) -> None:
            out = np.lib.format.open_memmap(folder / "mean.npy", mode="w+", dtype=np.float64, shape=values.shape)
            state = StreamingRollingMean(params.window, params.min_periods, params.center)
            at = 0
            for start in range(0, len(values), DEFAULT_CHUNK_ROWS):
                piece = state.feed(np.asarray(values[start : start + DEFAULT_CHUNK_ROWS]))
                out[at : at + len(piece)] = piece
                at += len(piece)
            tail = state.finish()
            out[at : at + len(tail)] = tail
            out.flush()

        mean: np.ndarray = np.load(self._folder(key, build) / "mean.npy", mmap_mode="r")
        return mean

    def arrays(
        self, row: dict[str, Any], data_file: dict[str, Any], spec: SeriesSpec
    ) -> tuple[np.ndarray | None, str, dict[str, np.ndarray]]:
        """(x values or None for the row index, x kind, label -> full-resolution values)."""
        inputs = sorted({column for column, _ in spec.series.values()} | ({spec.x} if spec.x else set()))
        cached, kinds = self.columns(data_file, inputs)
        out = {
            label: (cached[column] if derived == "values" else self.rolling_mean(data_file, row, column))
            for label, (column, derived) in spec.series.items()
        }
        if spec.x is None:
            return None, "index", out
        x = cached[spec.x]
        if len(x) > 1 and not bool(np.all(np.diff(x) >= 0)):
            raise ProcessingError(
                f"x: column {spec.x!r} is not in ascending order (or has gaps); "
                "choose another x column or the row index"
            )
        return x, kinds[spec.x], out


def _json(values: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in np.asarray(values, dtype=float).tolist()]


def visible_range(x: np.ndarray | None, rows: int, x_min: float | None, x_max: float | None) -> tuple[int, int]:
    """Rows [lo, hi) whose x lies in [x_min, x_max] (plus one row either side, so the line reaches the edges)."""
    if x is None:
        lo = 0 if x_min is None else max(0, math.floor(x_min))
        hi = rows if x_max is None else min(rows, math.ceil(x_max) + 1)
    else:
        lo = 0 if x_min is None else int(np.searchsorted(x, x_min, side="left"))
        hi = rows if x_max is None else int(np.searchsorted(x, x_max, side="right"))
    lo, hi = max(0, lo - 1), min(rows, hi + 1)
    return lo, max(lo, hi)


def downsample_window(
    x: np.ndarray | None, series: dict[str, np.ndarray], peaks: np.ndarray, lo: int, hi: int, points: int
) -> dict[str, Any]:
    """The rows [lo, hi) of every series at about ``points`` rows each (MinMaxLTTB), peaks' rows always kept."""
    from tsdownsample import NaNMinMaxLTTBDownsampler

    in_view = peaks[(peaks >= lo) & (peaks < hi)]
    marked = in_view if len(in_view) <= MAX_MARKERS else np.empty(0, dtype=np.int64)
    if hi - lo <= points:
        rows = np.arange(lo, hi)
        method = "none (every row)"
    else:
        chosen = [marked]
        xs = None if x is None else np.ascontiguousarray(x[lo:hi])
        for values in series.values():
            ys = np.ascontiguousarray(values[lo:hi])
            downsampler = NaNMinMaxLTTBDownsampler()  # type: ignore[no-untyped-call]
            picked = (
                downsampler.downsample(ys, n_out=points) if xs is None else downsampler.downsample(xs, ys, n_out=points)
            )
            chosen.append(np.asarray(picked, dtype=np.int64) + lo)
        rows = np.unique(np.concatenate(chosen))
        method = "MinMaxLTTB"
    xs_out = rows.astype(float) if x is None else np.asarray(x[rows])
    return {
        "start": lo,
        "end": hi,
        "rows_in_view": hi - lo,
        "points": len(rows),
        "method": method,
        "xs": _json(xs_out),
        "series": [{"name": name, "values": _json(values[rows])} for name, values in series.items()],
        "peaks_in_view": len(in_view),
        "peaks": [{"index": int(i), "x": float(i) if x is None else float(x[i])} for i in marked.tolist()],
    }


# The file's x axis for an export: (column name, values as as_axis gives them, kind).
Axis = tuple[str, np.ndarray, str]


def axis_arrow(axis: Axis, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of the axis as an Arrow array: times as timestamps to the microsecond (UTC for an
    instant, as written for a wall time), anything else as numbers; a missing value as null."""
    import pyarrow as pa

    _, values, kind = axis
    piece = np.asarray(values[start:stop], dtype=np.float64)
    if kind not in ("time", "wall-time"):
        return pa.array(piece, from_pandas=True)
    missing = np.isnan(piece)
    micros = np.round(np.where(missing, 0.0, piece) * 1e6).astype(np.int64)
    return pa.array(micros, type=pa.timestamp("us", tz="UTC" if kind == "time" else None), mask=missing)


def full_csv_chunks(
    row: dict[str, Any], series: dict[str, np.ndarray], rows_per_chunk: int = 200_000, axis: Axis | None = None
) -> Iterator[str | bytes]:
    """Every row of a rolling-mean result as CSV: row, the file's time column (``axis``), then each column and its
    rolling mean (empty: no value)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    data = row["result_data"]
    columns = series_columns(data)
    labels = [(c, f"{c} rolling mean ({data['window']})") for c in columns]
    header = io.StringIO()
    names = ["row"] + ([axis[0]] if axis else []) + [f"{c}{s}" for c in columns for s in ("", "_rolling_mean")]
    csv.writer(header, lineterminator="\n").writerow(neutralise(h) for h in names)
    yield header.getvalue()
    total = len(series[labels[0][0]]) if labels else 0
    options = pa_csv.WriteOptions(include_header=False)
    for start in range(0, total, rows_per_chunk):
        stop = min(total, start + rows_per_chunk)
        arrays = {"row": pa.array(np.arange(start, stop))}
        if axis is not None:
            arrays["x"] = axis_arrow(axis, start, stop)
        for number, (column, mean) in enumerate(labels):
            # from_pandas: NaN is written as an empty cell, as in the other exports.
            arrays[f"v{number}"] = pa.array(np.asarray(series[column][start:stop]), from_pandas=True)
            arrays[f"m{number}"] = pa.array(np.asarray(series[mean][start:stop]), from_pandas=True)
        out = io.BytesIO()
        pa_csv.write_csv(pa.table(arrays), out, options)
        yield out.getvalue()


def _json_array_chunks(values: Any, total: int, rows_per_chunk: int) -> Iterator[str]:
    """A JSON array of ``values[0:total]`` in pieces (NaN/inf as null); ``values`` None: the row numbers."""
    yield "["
    for start in range(0, total, rows_per_chunk):
        stop = min(total, start + rows_per_chunk)
        piece = list(range(start, stop)) if values is None else _json(np.asarray(values[start:stop]))
        text = json.dumps(piece, allow_nan=False)[1:-1]
        yield text if start == 0 else "," + text
    yield "]"


def full_json_chunks(
    row: dict[str, Any], spec: SeriesSpec, full: dict[str, np.ndarray], rows_per_chunk: int = 100_000
) -> Iterator[str]:
    """The result row as JSON with every row of its series (streamed; memory bounded by ``rows_per_chunk``).

    ``result_data`` keeps its own keys, but ``index`` and each series hold every row of the data file
    (``step`` 1, ``resolution`` "full") instead of the row's stored overview (every ``step``-th row).
    """
    data = row["result_data"]
    head = {key: value for key, value in row.items() if key != "result_data"}
    meta = {key: value for key, value in data.items() if key not in ("index", "series", "step")}
    meta.update(step=1, resolution="full", overview_step=data.get("step"))
    by_column: dict[str, dict[str, np.ndarray]] = {}
    for label, (column, derived) in spec.series.items():
        by_column.setdefault(column, {})[derived] = full[label]
    total = len(next(iter(full.values()))) if full else 0
    yield json.dumps(head, allow_nan=False)[:-1] + ', "result_data": ' + json.dumps(meta, allow_nan=False)[:-1]
    yield ', "index": '
    yield from _json_array_chunks(None, total, rows_per_chunk)
    yield ', "series": {'
    for number, (column, arrays) in enumerate(by_column.items()):
        yield ("" if number == 0 else ", ") + json.dumps(column) + ": {"
        for inner, (derived, values) in enumerate(arrays.items()):
            yield ("" if inner == 0 else ", ") + json.dumps(derived) + ": "
            yield from _json_array_chunks(values, total, rows_per_chunk)
        yield "}"
    yield "}}}"


def export_json(row: dict[str, Any], spec: SeriesSpec | None, full: dict[str, np.ndarray] | None) -> Iterator[str]:
    """The result's JSON: every row of a series result (``spec`` and ``full``), the row as stored otherwise."""
    if spec is not None and full is not None and row.get("result_data"):
        return full_json_chunks(row, spec, full)
    return iter((json.dumps(row, allow_nan=False),))


def export_csv(
    row: dict[str, Any], full: dict[str, np.ndarray] | None, axis: Axis | None = None
) -> Iterator[str | bytes]:
    """The result's CSV: every row for a rolling mean (``full``), the result's own table otherwise; with the
    file's time column (``axis``) beside the row numbers, so the rows line up with time."""
    if row.get("processing_type") == "rolling_mean" and full is not None:
        return full_csv_chunks(row, full, axis=axis)
    if axis is None or row.get("processing_type") != "peak_detection":
        return result_csv_chunks(row)
    name = axis[0]

    def x_at(index: int) -> Any:  # one peak's time, read where it is (the axis is memory-mapped)
        return axis_arrow(axis, index, index + 1)[0].as_py()

    return result_csv_chunks(row, x_column=(name, x_at))
