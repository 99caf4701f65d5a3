"""The chart's data: a result's series over a visible range, min-max downsampled; the full-resolution exports.

``GET /api/etl/results/{id}/series?x=&x_min=&x_max=&points=`` answers the rows in
[x_min, x_max] of every series at about ``points`` points (MinMaxLTTB), with the
peaks in view; the results page asks again on every zoom or pan. The endpoint:
:mod:`clinicflow.service.routes.series`; this module reads the series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException

from clinicflow.core import settings
from clinicflow.processing import store
from clinicflow.processing.axis import default_time_column
from clinicflow.processing.base import ProcessingError
from clinicflow.processing.datafiles import DataFileError
from clinicflow.processing.downsample import (
    SERIES_TYPES,
    Axis,
    SeriesCache,
    SeriesSpec,
    downsample_window,
    export_csv,
    export_json,
    series_spec,
    visible_range,
)

DEFAULT_CACHE_MB = 4096


def cache_bytes() -> int:
    """The series cache's bound: ``CLINICFLOW_PROCESSING_SERIES_CACHE_MB`` (default 4096) MiB."""
    return settings.processing_series_cache_mb(DEFAULT_CACHE_MB) << 20


class ResultSeries:
    """Full-resolution series of results, read through a :class:`SeriesCache` of the bucket's data files."""

    def __init__(self, db: Callable[..., Any], writer: Any, workdir: Path) -> None:
        self.db = db
        self.cache = SeriesCache(workdir / "series", writer.download, cache_bytes())

    def _rows(self, result_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
        row = self.db(store.get_result, result_id)
        if row is None:
            raise HTTPException(404, f"no result {result_id}")
        data_file = self.db(store.get_data_file, row["data_file_id"])
        if data_file is None:
            raise HTTPException(404, f"data file {row['data_file_id']} of result {result_id} is not registered")
        return row, data_file

    def window(
        self, result_id: int, x: str | None, x_min: float | None, x_max: float | None, points: int
    ) -> dict[str, Any]:
        row, data_file = self._rows(result_id)
        try:
            spec = series_spec(row, data_file, x if x is not None else default_time_column(data_file["columns"]))
            xs, kind, series = self.cache.arrays(row, data_file, spec)
        except (ProcessingError, DataFileError) as exc:
            raise HTTPException(422, str(exc)) from None
        rows = int(data_file["row_count"])
        lo, hi = visible_range(xs, rows, x_min, x_max)
        view = downsample_window(xs, series, spec.peaks, lo, hi, points)
        return {
            "id": result_id,
            "rows": rows,
            "x": {"name": spec.x, "kind": kind},
            "x_columns": [c["name"] for c in data_file["columns"]],
            "peaks_total": len(spec.peaks),
            **view,
        }

    def full_series(self, row: dict[str, Any]) -> tuple[SeriesSpec, dict[str, np.ndarray]] | None:
        """Every row of a completed series result (rolling mean, peak detection); None for other results."""
        if row.get("processing_type") not in SERIES_TYPES or row.get("status") != "COMPLETED":
            return None
        _, data_file = self._rows(int(row["id"]))
        try:
            spec = series_spec(row, data_file, None)
            return spec, self.cache.arrays(row, data_file, spec)[2]
        except (ProcessingError, DataFileError) as exc:
            raise HTTPException(422, str(exc)) from None

    def json(self, row: dict[str, Any]) -> Iterator[str]:
        """The export's JSON: every row of a series result (prepared before the response starts)."""
        full = self.full_series(row)
        return export_json(row, *(full or (None, None)))

    def csv(self, row: dict[str, Any]) -> Iterator[str | bytes]:
        """The export's CSV: every row of a rolling mean (prepared before the response starts), with the file's
        time column beside the row numbers (a rolling mean's and a peak list's)."""
        full, axis = None, None
        if row.get("processing_type") in SERIES_TYPES and row.get("status") == "COMPLETED":
            _, data_file = self._rows(int(row["id"]))
            axis = self._axis(data_file)
            if row.get("processing_type") == "rolling_mean":
                try:
                    spec = series_spec(row, data_file, None)
                    full = self.cache.arrays(row, data_file, spec)[2]
                except (ProcessingError, DataFileError) as exc:
                    raise HTTPException(422, str(exc)) from None
        return export_csv(row, full, axis)

    def _axis(self, data_file: dict[str, Any]) -> Axis | None:
        """The file's time column at full resolution, or None (no time column, or one that is not a time)."""
        name = default_time_column(data_file["columns"])
        if name is None:
            return None
        try:
            arrays, kinds = self.cache.columns(data_file, [name])
        except (ProcessingError, DataFileError):
            return None  # the export goes on with row numbers only; the chart names what is wrong with the column
        return name, arrays[name], kinds[name]
