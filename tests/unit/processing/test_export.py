"""CSV export layouts, one per processing type."""

from __future__ import annotations

import csv
import io

from clinicflow.processing.export import result_csv_chunks


def rows_of(row: dict) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(result_csv_chunks(row, rows_per_chunk=2)))))


def test_rolling_mean_exports_each_series_with_its_mean() -> None:
    data = {"index": [0, 1, 2], "series": {"hr": {"values": [1.0, 2.0, 3.0], "rolling_mean": [None, 1.5, 2.5]}}}
    assert rows_of({"processing_type": "rolling_mean", "result_data": data}) == [
        ["row", "hr", "hr_rolling_mean"],
        ["0", "1.0", ""],
        ["1", "2.0", "1.5"],
        ["2", "3.0", "2.5"],
    ]


def test_quality_custom_and_empty_results() -> None:
    quality = {"columns": {"hr": {"dtype": "float64", "nulls": 1, "null_fraction": 0.5, "min": 1.0, "max": 2.0}}}
    assert rows_of({"processing_type": "data_quality", "result_data": quality})[1] == [
        "hr",
        "float64",
        "1",
        "0.5",
        "1.0",
        "2.0",
    ]
    table = {"result": {"a": [1, 2], "b": ["x", "y"]}}
    assert rows_of({"processing_type": "custom", "result_data": table}) == [["a", "b"], ["1", "x"], ["2", "y"]]
    nested = {"result": {"n": 3, "d": {"k": 1}}}
    assert rows_of({"processing_type": "custom", "result_data": nested}) == [
        ["key", "value"],
        ["n", "3"],
        ["d", '{"k": 1}'],
    ]
    assert rows_of({"processing_type": "peak_detection", "result_data": None}) == [[]]


def test_formula_cells_are_neutralised_numbers_are_not() -> None:
    table = {
        "result": {"=cmd|' /C calc'!A0": ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "plain"], "n": [-1.5, 2, 3, 4, 5, 6]}
    }
    rows = rows_of({"processing_type": "custom", "result_data": table})
    assert rows[0] == ["'=cmd|' /C calc'!A0", "n"]
    assert [r[0] for r in rows[1:]] == ["'=1+1", "'+1", "'-2", "'@SUM(A1)", "'\tx", "plain"]
    assert rows[1][1] == "-1.5"  # a number stays a number


def test_full_json_export_holds_every_row_in_bounded_pieces() -> None:
    import json

    import numpy as np

    from clinicflow.processing.downsample import SeriesSpec, export_json

    rows = 25_003
    values = np.arange(rows, dtype=float)
    values[7] = np.nan
    mean = values / 2
    stored = {
        "processing_type": "rolling_mean",
        "rows": rows,
        "window": 3,
        "step": 13,
        "index": [0, 13],
        "series": {"hr": {"values": [0.0, 13.0], "rolling_mean": [None, 6.5]}},
        "summary": {"hr": {"count": 1}},
    }
    row = {"id": 4, "processing_type": "rolling_mean", "status": "COMPLETED", "result_data": stored}
    spec = SeriesSpec(
        x=None,
        series={"hr": ("hr", "values"), "hr rolling mean (3)": ("hr", "rolling_mean")},
        peaks=np.empty(0, dtype=np.int64),
        window=3,
    )
    from clinicflow.processing import downsample

    pieces = list(
        downsample.full_json_chunks(row, spec, {"hr": values, "hr rolling mean (3)": mean}, rows_per_chunk=1000)
    )
    assert max(len(p) for p in pieces) < 20_000  # one chunk of 1,000 numbers at a time, never the whole series
    exported = json.loads("".join(pieces))
    data = exported["result_data"]
    assert exported["id"] == 4
    assert data["resolution"] == "full"
    assert data["step"] == 1
    assert data["overview_step"] == 13
    assert data["index"] == list(range(rows))
    assert data["summary"] == stored["summary"]
    assert len(data["series"]["hr"]["values"]) == rows
    assert data["series"]["hr"]["values"][7] is None
    assert data["series"]["hr"]["values"][rows - 1] == rows - 1
    assert data["series"]["hr"]["rolling_mean"][rows - 1] == (rows - 1) / 2
    # Results without a full series export as stored.
    quality = {"id": 5, "processing_type": "data_quality", "result_data": {"columns": {}}}
    assert json.loads("".join(export_json(quality, None, None))) == quality
