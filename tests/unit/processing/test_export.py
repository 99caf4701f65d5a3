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
        ["row", "hr", "hr_rolling_mean"], ["0", "1.0", ""], ["1", "2.0", "1.5"], ["2", "3.0", "2.5"]]


def test_quality_custom_and_empty_results() -> None:
    quality = {"columns": {"hr": {"dtype": "float64", "nulls": 1, "null_fraction": 0.5, "min": 1.0, "max": 2.0}}}
    assert rows_of({"processing_type": "data_quality", "result_data": quality})[1] == \
        ["hr", "float64", "1", "0.5", "1.0", "2.0"]
    table = {"result": {"a": [1, 2], "b": ["x", "y"]}}
    assert rows_of({"processing_type": "custom", "result_data": table}) == [["a", "b"], ["1", "x"], ["2", "y"]]
    nested = {"result": {"n": 3, "d": {"k": 1}}}
    assert rows_of({"processing_type": "custom", "result_data": nested}) == [["key", "value"], ["n", "3"],
                                                                               ["d", '{"k": 1}']]
    assert rows_of({"processing_type": "peak_detection", "result_data": None}) == [[]]


def test_formula_cells_are_neutralised_numbers_are_not() -> None:
    table = {"result": {"=cmd|' /C calc'!A0": ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "plain"],
                        "n": [-1.5, 2, 3, 4, 5, 6]}}
    rows = rows_of({"processing_type": "custom", "result_data": table})
    assert rows[0] == ["'=cmd|' /C calc'!A0", "n"]
    assert [r[0] for r in rows[1:]] == ["'=1+1", "'+1", "'-2", "'@SUM(A1)", "'\tx", "plain"]
    assert rows[1][1] == "-1.5"  # a number stays a number
