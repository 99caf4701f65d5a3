"""Min-max downsampling of a visible range, the time axis, and the full-resolution CSV (no services)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from clinicflow.processing.axis import as_axis, default_time_column
from clinicflow.processing.base import ProcessingError
from clinicflow.processing.downsample import (
    downsample_window,
    full_csv_chunks,
    visible_range,
)


def test_a_one_row_spike_and_every_peak_row_survive_downsampling() -> None:
    rows = 1_000_000
    values = np.sin(np.arange(rows) / 500.0)
    values[654_321] = 40.0
    peaks = np.array([10, 500_000, 999_990])
    view = downsample_window(None, {"v": values}, peaks, 0, rows, 1000)
    assert view["method"] == "MinMaxLTTB"
    assert view["points"] <= 1000 + len(peaks)
    assert max(v for v in view["series"][0]["values"] if v is not None) == 40.0
    drawn = dict(zip(view["xs"], view["series"][0]["values"], strict=True))
    assert [p["index"] for p in view["peaks"]] == peaks.tolist()
    assert all(drawn[float(i)] == values[i] for i in peaks)


def test_a_small_range_comes_back_whole_and_ranges_follow_the_x_column() -> None:
    x = np.arange(100, dtype=float) * 0.5
    lo, hi = visible_range(x, 100, 10.0, 20.0)
    assert (lo, hi) == (19, 42)  # rows with x in [10, 20] and one either side
    view = downsample_window(x, {"v": np.arange(100.0)}, np.empty(0, dtype=np.int64), lo, hi, 1000)
    assert view["method"] == "none (every row)"
    assert view["xs"] == x[lo:hi].tolist()
    assert visible_range(None, 100, None, None) == (0, 100)


def test_time_axis_from_iso_text_and_datetimes_and_the_default_column() -> None:
    seconds, kind = as_axis(pd.Series(["2026-03-01T00:00:00Z", "2026-03-01 01:00:01.5+01:00", None]), "time")
    assert kind == "time"
    assert seconds[:2].tolist() == [1772323200.0, 1772323201.5]
    assert np.isnan(seconds[2])
    stamps = pd.Series(pd.date_range("2026-03-01", periods=2, freq="1ms"))
    assert as_axis(stamps, "time")[0].tolist() == [1772323200.0, 1772323200.001]
    # No zone in the file: a wall time, drawn as written (the page never moves it into the viewer's zone).
    assert as_axis(stamps, "time")[1] == "wall-time"
    assert as_axis(stamps.dt.tz_localize("Europe/Berlin"), "time")[1] == "time"
    assert as_axis(pd.Series(["2024-03-14 06:00", "2024-03-14 06:05"]), "time")[1] == "wall-time"
    # A European export's dotted day-first date-times are an axis (a wall time), and a bad value is found as such.
    seconds, kind = as_axis(pd.Series(["14.03.2024 08:00", "14.03.2024 08:05"]), "Datum/Zeit")
    assert (seconds.tolist(), kind) == ([1710403200.0, 1710403500.0], "wall-time")
    with pytest.raises(ProcessingError, match="first bad value at chunk row 1"):
        as_axis(pd.Series(["14.03.2024 08:00", "later"]), "Datum")
    assert default_time_column([{"name": "v", "dtype": "float64"}, {"name": "Zeitstempel", "dtype": "str"}]) == (
        "Zeitstempel"
    )
    with pytest.raises(ProcessingError, match="'label'"):
        as_axis(pd.Series(["a", "b"]), "label")
    assert default_time_column([{"name": "v", "dtype": "double"}, {"name": "at", "dtype": "timestamp[ns]"}]) == "at"
    assert default_time_column([{"name": "Time", "dtype": "object"}]) == "Time"
    assert default_time_column([{"name": "v", "dtype": "double"}]) is None


def test_elapsed_time_text_is_an_axis_in_seconds() -> None:
    seconds, kind = as_axis(pd.Series(["0:00.000", "0:00.003", "1:02.500", "1:00:00.000", None]), "Elapsed time")
    assert kind == "numeric"
    assert seconds[:4].tolist() == [0.0, 0.003, 62.5, 3600.0]
    assert np.isnan(seconds[4])
    assert default_time_column([{"name": "Elapsed time", "dtype": "str"}, {"name": "MLII", "dtype": "float64"}]) == (
        "Elapsed time"
    )
    with pytest.raises(ProcessingError, match="elapsed time"):
        as_axis(pd.Series(["0:00.000", "later"]), "Elapsed time")


def test_the_rolling_mean_csv_holds_every_row() -> None:
    values = np.arange(250_001, dtype=float)
    mean = pd.Series(values).rolling(3).mean().to_numpy()
    row = {"result_data": {"window": 3, "series": {"v": {}}}}
    text = "".join(
        c if isinstance(c, str) else c.decode()
        for c in full_csv_chunks(row, {"v": values, "v rolling mean (3)": mean}, rows_per_chunk=100_000)
    )
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame.columns) == ["row", "v", "v_rolling_mean"]
    assert len(frame) == 250_001
    np.testing.assert_array_equal(frame["v"], values)
    np.testing.assert_allclose(frame["v_rolling_mean"], mean, equal_nan=True)


def test_unix_timestamps_in_a_time_named_column_are_a_time_axis_decided_once_per_column(tmp_path) -> None:
    import shutil

    from clinicflow.processing.axis import epoch_units_per_second, is_time_name
    from clinicflow.processing.downsample import DEFAULT_CHUNK_ROWS, SeriesCache

    for name in ("Date/Time", "Timestamp (UTC)", "time [ms]", "sample_time", "unix time", "t"):
        assert is_time_name(name), name
    for name in ("Heart rate (bpm)", "SpO2", "patient_id", "date of birth"):
        assert not is_time_name(name), name
    assert (
        default_time_column([{"name": "HR", "dtype": "float64"}, {"name": "Date/Time", "dtype": "str"}]) == "Date/Time"
    )
    start_ms = 1_717_000_000_000  # 2024-05-29T16:26:40Z
    millis = pd.Series([start_ms, start_ms + 4, None], dtype="Int64")
    assert epoch_units_per_second(millis, "timestamp") == 1e3
    seconds, kind = as_axis(millis, "timestamp", 1e3)
    assert kind == "time"
    assert seconds[:2].tolist() == [1_717_000_000.0, 1_717_000_000.004]
    assert epoch_units_per_second(pd.Series([1_717_000_000.25]), "time") == 1.0
    assert epoch_units_per_second(pd.Series([1_717_000_000_000_000_000]), "ts") == 1e9
    # Seconds since the recording began, an account number, a column spanning two bands: as they are.
    assert epoch_units_per_second(pd.Series([0.0, 0.004, 3600.0]), "time") is None
    assert epoch_units_per_second(pd.Series([1_717_000_000_000]), "account") is None
    assert epoch_units_per_second(pd.Series([1_717_000_000, 1_717_000_000_000]), "time") is None
    # Through the cache the page reads: every chunk on the first chunk's unit.
    rows = DEFAULT_CHUNK_ROWS + 10
    source = tmp_path / "watch.csv"
    pd.DataFrame({"timestamp": start_ms + 4 * np.arange(rows), "ppg": np.sin(np.arange(rows) / 9)}).to_csv(
        source, index=False
    )
    cache = SeriesCache(tmp_path / "cache", lambda _name, local: shutil.copyfile(source, local), 1 << 30)
    data_file = {"sha256": "x", "object_name": "watch.csv", "row_count": rows, "format": "csv", "name": "watch.csv"}
    arrays, kinds = cache.columns(data_file, ["timestamp", "ppg"])
    assert kinds == {"timestamp": "time", "ppg": "numeric"}
    assert arrays["timestamp"][-1] == pytest.approx((start_ms + 4 * (rows - 1)) / 1e3)


def test_exports_carry_the_files_time_column_beside_the_row_numbers() -> None:
    from clinicflow.processing.downsample import export_csv

    seconds = 1772352000.0 + np.arange(5) * 0.004  # 2026-03-01 08:00:00 at 250 Hz, a wall time (no zone)
    seconds[3] = np.nan
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    mean = pd.Series(values).rolling(2).mean().to_numpy()
    row = {"processing_type": "rolling_mean", "result_data": {"window": 2, "series": {"v": {}}}}
    axis = ("time", seconds, "wall-time")
    text = "".join(
        c if isinstance(c, str) else c.decode()
        for c in export_csv(row, {"v": values, "v rolling mean (2)": mean}, axis)
    )
    lines = text.splitlines()
    assert lines[0] == "row,time,v,v_rolling_mean"
    assert lines[1].startswith("0,2026-03-01 08:00:00")
    assert lines[2].startswith("1,2026-03-01 08:00:00.004")
    assert lines[4].startswith("3,,4")  # a missing time stays empty
    peaks = {
        "processing_type": "peak_detection",
        "result_data": {"peaks": [{"index": 2, "value": 3.0}, {"index": 4, "value": 5.0}]},
    }
    text = "".join(c if isinstance(c, str) else c.decode() for c in export_csv(peaks, None, ("time", seconds, "time")))
    assert text.splitlines()[:2] == ["index,time,value", "2,2026-03-01 08:00:00.008000+00:00,3.0"]


def test_a_rolling_means_columns_keep_the_order_asked_not_jsonbs() -> None:
    from clinicflow.processing.downsample import export_csv

    # As PostgreSQL JSONB hands the result back: shorter keys first.
    data = {"window": 2, "column_order": ["heart_rate", "spo2"], "series": {"spo2": {}, "heart_rate": {}}}
    full = {
        name: np.arange(3.0) for name in ("spo2", "heart_rate", "spo2 rolling mean (2)", "heart_rate rolling mean (2)")
    }
    text = "".join(
        c if isinstance(c, str) else c.decode()
        for c in export_csv({"processing_type": "rolling_mean", "result_data": data}, full)
    )
    assert text.splitlines()[0] == "row,heart_rate,heart_rate_rolling_mean,spo2,spo2_rolling_mean"
