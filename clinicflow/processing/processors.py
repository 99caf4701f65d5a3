"""The processor registry: processing types, their Pydantic parameter models, and the processors.

A processor reads its input through :class:`DataSource` in chunks, reports
progress (0..1) through a callback and returns a JSON-serialisable dict: the
``result_data`` of the results row. Rolling mean and peak detection keep
memory bounded by ``chunk_rows`` plus an overlap, whatever the file's size;
the row keeps an overview of each series (``max_points``); exports and the chart read the
full-resolution series (``clinicflow.processing.downsample``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError, model_validator

from clinicflow.processing.axis import is_time_name
from clinicflow.processing.base import DataSource, InvalidRequest, ParamsModel, ProcessingError, ProgressFn, json_number
from clinicflow.processing.custom import CustomParams, run_custom
from clinicflow.processing.datafiles import DEFAULT_CHUNK_ROWS, MAX_CHUNK_ROWS, MAX_POINTS, read_ahead
from clinicflow.processing.peaks import PeakOptions, find_peaks_stream
from clinicflow.processing.quality import DataQualityParams, data_quality


def _json_list(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in values.astype(float).tolist()]


def _numeric(series: pd.Series | np.ndarray, column: str, offset: int, source: DataSource) -> np.ndarray:
    """A chunk of ``column`` as float64 (missing as NaN); a float64 array as read is used as it is."""
    if isinstance(series, np.ndarray) and series.dtype == np.float64:
        return series
    series = pd.Series(series) if isinstance(series, np.ndarray) else series
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        bad = pd.to_numeric(series, errors="coerce").isna() & series.notna()
        row = offset + int(np.argmax(bad.to_numpy())) if bad.any() else offset
        raise ProcessingError(f"{source.name}: column {column!r} is not numeric (first bad value at row {row})")
    return series.to_numpy(dtype=float, na_value=np.nan)


def _require_columns(source: DataSource, columns: list[str], field: str) -> None:
    missing = [c for c in columns if c not in source.columns]
    if missing:
        raise ProcessingError(f"{field}: {source.name} has no column {', '.join(map(repr, missing))}")


def _sample_step(rows: int, max_points: int) -> int:
    return max(1, math.ceil(rows / max_points)) if rows else 1


# ---------------------------------------------------------------- rolling mean


class RollingMeanParams(ParamsModel):
    window: int = Field(ge=1, le=MAX_CHUNK_ROWS, description="Rows per window.")
    min_periods: int | None = Field(default=None, ge=1, description="Values needed for a result (default: window).")
    center: bool = Field(default=False, description="Label each window at its centre instead of its end.")
    columns: list[str] | None = Field(
        default=None, min_length=1, description="Numeric columns (default: every numeric column but a time column)."
    )
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, ge=1, le=MAX_CHUNK_ROWS, description="Rows read per chunk.")
    max_points: int = Field(
        default=2000,
        ge=10,
        le=MAX_POINTS,
        description="Points of each series in the result's overview (exports and the chart use every row).",
    )

    @model_validator(mode="after")
    def _min_periods_within_window(self) -> RollingMeanParams:
        if self.min_periods is not None and self.min_periods > self.window:
            raise ValueError("min_periods must not exceed window")
        return self


class StreamingRollingMean:
    """pandas' ``rolling(window, min_periods, center).mean()`` over a stream of chunks.

    Carries the last ``window - 1`` values into the next chunk, so each output
    equals the whole-series result. Centred windows equal trailing windows
    shifted back by ``(window - 1) // 2``, with that many missing values after
    the end (pandas counts only present values against ``min_periods``).
    """

    def __init__(self, window: int, min_periods: int | None, center: bool) -> None:
        self.window = window
        self.min_periods = window if min_periods is None else min_periods
        self.shift = (window - 1) // 2 if center else 0
        self._to_drop = self.shift
        self._carry = np.empty(0)

    def feed(self, values: np.ndarray) -> np.ndarray:
        joined = np.concatenate([self._carry, values])
        out = pd.Series(joined).rolling(self.window, min_periods=self.min_periods).mean().to_numpy()
        out = out[len(self._carry) :]
        self._carry = joined[-(self.window - 1) :] if self.window > 1 else np.empty(0)
        if self._to_drop:
            dropped = min(self._to_drop, len(out))
            out = out[dropped:]
            self._to_drop -= dropped
        return out

    def finish(self) -> np.ndarray:
        return self.feed(np.full(self.shift, np.nan)) if self.shift else np.empty(0)


def rolling_mean(source: DataSource, params: RollingMeanParams, progress: ProgressFn) -> dict[str, Any]:
    columns = params.columns
    if columns is None:
        columns = _numeric_columns(source, params.chunk_rows)
        if not columns:
            raise ProcessingError(f"parameters.columns: {source.name} has no numeric column")
    _require_columns(source, columns, "parameters.columns")
    step = _sample_step(source.row_count, params.max_points)
    states = {c: StreamingRollingMean(params.window, params.min_periods, params.center) for c in columns}
    values: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    means: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    totals = {c: {"count": 0, "sum": 0.0, "min": math.inf, "max": -math.inf} for c in columns}
    emitted = dict.fromkeys(columns, 0)
    rows = 0

    def keep(column: str, out: np.ndarray) -> None:
        start = emitted[column]
        first = (-start) % step
        means[column].append(out[first::step])
        present = out[~np.isnan(out)]
        if present.size:
            total = totals[column]
            total["count"] += int(present.size)
            total["sum"] += float(present.sum())
            total["min"] = min(total["min"], float(present.min()))
            total["max"] = max(total["max"], float(present.max()))
        emitted[column] = start + len(out)

    for chunk in source.chunks(columns, params.chunk_rows):
        first = (-rows) % step
        for column in columns:
            array = _numeric(chunk[column], column, rows, source)
            values[column].append(array[first::step])
            keep(column, states[column].feed(array))
        rows += len(chunk)
        progress(rows / source.row_count if source.row_count else 1.0)
    for column in columns:
        keep(column, states[column].finish())
    index = list(range(0, rows, step))
    return {
        "processing_type": "rolling_mean",
        "rows": rows,
        "window": params.window,
        "step": step,
        "index": index,
        "column_order": list(columns),  # as asked (or the file's): a JSONB object keeps its keys in its own order
        "series": {
            c: {
                "values": _json_list(np.concatenate(values[c]) if values[c] else np.empty(0)),
                "rolling_mean": _json_list(np.concatenate(means[c]) if means[c] else np.empty(0)),
            }
            for c in columns
        },
        "summary": {
            c: {
                "count": t["count"],
                "mean": t["sum"] / t["count"] if t["count"] else None,
                "min": json_number(t["min"]),
                "max": json_number(t["max"]),
            }
            for c, t in totals.items()
        },
    }


def _numeric_columns(source: DataSource, chunk_rows: int) -> list[str]:
    """The numeric columns a processor takes by default: the signals, not a time column (``time_s``, ``t``,
    ``Timestamp``: the x axis, whose rolling mean is a diagonal line and whose peaks are none)."""
    for chunk in source.chunks(None, min(chunk_rows, 10_000)):
        numeric = [
            str(c)
            for c, t in chunk.dtypes.items()
            if pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
        ]
        signals = [c for c in numeric if not is_time_name(c)]
        return signals or numeric
    return []


# ---------------------------------------------------------------- peak detection


class PeakDetectionParams(ParamsModel):
    column: str | None = Field(
        default=None, description="Numeric column (default: the first numeric column that is not a time column)."
    )
    height: float | None = Field(default=None, description="Minimal peak height (scipy find_peaks).")
    distance: int | None = Field(default=None, ge=1, le=MAX_CHUNK_ROWS, description="Minimal rows between peaks.")
    prominence: float | None = Field(default=None, ge=0, description="Minimal prominence.")
    width: float | None = Field(default=None, ge=0, description="Minimal width in rows (needs wlen).")
    wlen: int | None = Field(default=None, ge=3, le=MAX_CHUNK_ROWS, description="Window length for prominence (rows).")
    chunk_rows: int = Field(default=1_000_000, ge=1, le=MAX_CHUNK_ROWS, description="Rows processed per chunk.")
    overlap_rows: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CHUNK_ROWS,
        description="Rows of context either side of a chunk for prominences "
        "(default 4096; at least wlen/2). Results do not depend on it.",
    )
    max_peaks: int = Field(default=10_000, ge=1, le=MAX_POINTS, description="Peaks listed in the result.")
    max_points: int = Field(
        default=2000,
        ge=10,
        le=MAX_POINTS,
        description="Points of the series in the result's overview (the chart uses every row).",
    )

    @model_validator(mode="after")
    def _width_needs_wlen(self) -> PeakDetectionParams:
        if self.width is not None and self.wlen is None:
            # Widths are measured between the prominence bases: bounded by wlen they stay within a chunk's halo.
            raise ValueError("width needs wlen (the window the bases of each peak are searched in)")
        return self


def _peak_options(params: PeakDetectionParams) -> PeakOptions:
    return PeakOptions(
        height=params.height,
        distance=params.distance,
        prominence=params.prominence,
        width=params.width,
        wlen=params.wlen,
        halo=params.overlap_rows,
    )


def peak_detection(source: DataSource, params: PeakDetectionParams, progress: ProgressFn) -> dict[str, Any]:
    column = params.column
    if column is None:
        numeric = _numeric_columns(source, params.chunk_rows)
        if not numeric:
            raise ProcessingError(f"parameters.column: {source.name} has no numeric column")
        column = numeric[0]
    _require_columns(source, [column], "parameters.column")
    step = _sample_step(source.row_count, params.max_points)
    sampled: list[np.ndarray] = []
    reads = {"count": 0}

    def read() -> Iterator[np.ndarray]:
        reads["count"] += 1
        first_read = reads["count"] == 1
        rows = 0
        for chunk in read_ahead(source.column_chunks(column, min(params.chunk_rows, DEFAULT_CHUNK_ROWS))):
            array = _numeric(chunk, column, rows, source)
            if first_read:  # a copy: a view would keep every chunk alive
                sampled.append(array[(-rows) % step :: step].copy())
            rows += len(array)
            yield array

    indices, props = find_peaks_stream(read, _peak_options(params), progress, source.row_count)
    count = len(indices)
    peaks: list[dict[str, Any]] = []
    for i in range(min(params.max_peaks, count)):
        peak: dict[str, Any] = {"index": int(indices[i])}
        if "peak_heights" in props:
            peak["value"] = json_number(props["peak_heights"][i])
        if "prominences" in props:
            peak["prominence"] = json_number(props["prominences"][i])
        if "widths" in props:
            peak["width"] = json_number(props["widths"][i])
        peaks.append(peak)
    _fill_peak_values(source, column, peaks, params.chunk_rows)
    rows = source.row_count
    return {
        "processing_type": "peak_detection",
        "column": column,
        "rows": rows,
        "count": count,
        "truncated": count > len(peaks),
        "peaks": peaks,
        "step": step,
        "index": list(range(0, rows, step)),
        "series": {column: {"values": _json_list(np.concatenate(sampled) if sampled else np.empty(0))}},
    }


def _fill_peak_values(source: DataSource, column: str, peaks: list[dict[str, Any]], chunk_rows: int) -> None:
    """Each listed peak's value (when no ``height`` gave it), in a second streamed pass."""
    wanted = [p for p in peaks if "value" not in p]
    if not wanted:
        return
    position = 0
    at = 0
    for chunk in source.column_chunks(column, min(chunk_rows, DEFAULT_CHUNK_ROWS)):
        array = chunk if isinstance(chunk, np.ndarray) else chunk.to_numpy(dtype=float, na_value=np.nan)
        end = position + len(array)
        while at < len(wanted) and wanted[at]["index"] < end:
            wanted[at]["value"] = json_number(array[wanted[at]["index"] - position])
            at += 1
        position = end
        if at >= len(wanted):
            return


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class Processor:
    name: str
    params_model: type[BaseModel]
    run: Callable[[DataSource, Any, ProgressFn], dict[str, Any]]
    description: str


REGISTRY: dict[str, Processor] = {
    "rolling_mean": Processor(
        "rolling_mean", RollingMeanParams, rolling_mean, "Rolling mean of numeric columns (pandas semantics), streamed."
    ),
    "peak_detection": Processor(
        "peak_detection",
        PeakDetectionParams,
        peak_detection,
        "Peaks of one numeric column (scipy.signal.find_peaks), streamed.",
    ),
    "data_quality": Processor(
        "data_quality",
        DataQualityParams,
        data_quality,
        "Nulls, duplicates, ranges and types per column; pandera schema check.",
    ),
    "custom": Processor(
        "custom",
        CustomParams,
        run_custom,
        "A script process(df, params) -> dict from the scripts folder, in a subprocess.",
    ),
}


def validate_request(
    processing_type: str,
    parameters: dict[str, Any] | None,
    *,
    scripts_dir: Path | None = None,
    file_columns: list[str] | None = None,
) -> BaseModel:
    """The parameters as the processor's model; :class:`InvalidRequest` names the field at fault.

    ``file_columns`` (the data file's columns) lets column parameters be checked before any run.
    """
    processor = REGISTRY.get(processing_type)
    if processor is None:
        raise InvalidRequest(
            "processing_type", f"unknown processing type {processing_type!r}; one of {', '.join(sorted(REGISTRY))}"
        )
    try:
        params = processor.params_model.model_validate(parameters or {}, context={"scripts_dir": scripts_dir})
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt name also makes the real one "missing": the unknown name is the error to report.
        unknown = [e for e in errors if e["type"] == "extra_forbidden"]
        error = (unknown or errors)[0]
        field = ".".join(["parameters", *(str(p) for p in error["loc"])])
        if unknown:
            known = ", ".join(processor.params_model.model_fields)
            raise InvalidRequest(field, f"unknown parameter {str(error['loc'][-1])!r}; known: {known}") from None
        raise InvalidRequest(field, error["msg"]) from None
    if file_columns is not None:
        named = getattr(params, "columns", None) or ([column] if (column := getattr(params, "column", None)) else [])
        missing = [c for c in named if c not in file_columns]
        if missing:
            field = "parameters.columns" if hasattr(params, "columns") else "parameters.column"
            raise InvalidRequest(field, f"no column {', '.join(map(repr, missing))} in the data file")
    return params


def run_processor(processing_type: str, source: DataSource, params: BaseModel, progress: ProgressFn) -> dict[str, Any]:
    return REGISTRY[processing_type].run(source, params, progress)
