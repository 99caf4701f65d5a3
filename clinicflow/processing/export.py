"""A result row as a flat table, for the CSV export (one layout per processing type)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any


def series_columns(data: dict[str, Any]) -> list[str]:
    """A rolling mean's columns in the order asked (the file's by default), not PostgreSQL JSONB's key order
    (shorter keys first: `spo2` before `heart_rate`); results stored before the order was kept: the object's."""
    return list(data.get("column_order") or data["series"])


XColumn = tuple[str, Callable[[int], Any]]  # (the time column's name, its value at a row)


def result_table(row: dict[str, Any], x_column: XColumn | None = None) -> tuple[list[str], Iterator[list[Any]]]:
    """(header, rows) of a result's data; an empty table while the row has no result. A peak list gets the
    file's time at each peak's row (``x_column``) after its index."""
    data = row.get("result_data") or {}
    kind = row.get("processing_type")
    if kind == "rolling_mean" and data:
        columns = series_columns(data)
        header = ["row"] + [f"{c}{suffix}" for c in columns for suffix in ("", "_rolling_mean")]

        def series_rows() -> Iterator[list[Any]]:
            for i, index in enumerate(data["index"]):
                yield [index] + [data["series"][c][k][i] for c in columns for k in ("values", "rolling_mean")]

        return header, series_rows()
    if kind == "peak_detection" and data:
        keys = ["index", "value", "prominence", "width"]
        present = [k for k in keys if any(k in p for p in data["peaks"])] or ["index"]
        if x_column is not None and "index" in present:
            name, x_at = x_column
            return [present[0], name, *present[1:]], (
                [p.get(present[0]), x_at(int(p["index"])), *(p.get(k) for k in present[1:])] for p in data["peaks"]
            )
        return present, ([p.get(k) for k in present] for p in data["peaks"])
    if kind == "data_quality" and data:
        header = ["column", "dtype", "nulls", "null_fraction", "min", "max"]
        return header, ([name, *(stats.get(k) for k in header[1:])] for name, stats in data["columns"].items())
    if kind == "custom" and data:
        result = data.get("result", {})
        lists = {k: v for k, v in result.items() if isinstance(v, list)}
        if lists and len(lists) == len(result) and len({len(v) for v in lists.values()}) == 1:
            names = list(lists)
            return names, (list(values) for values in zip(*lists.values(), strict=False))
        return ["key", "value"], (
            [k, v if isinstance(v, (int, float, str)) or v is None else json.dumps(v)] for k, v in result.items()
        )
    return [], iter(())


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with ' (numbers stay numbers)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return "" if value is None else value


def result_csv_chunks(
    row: dict[str, Any], rows_per_chunk: int = 1000, x_column: XColumn | None = None
) -> Iterator[str]:
    """The CSV text in pieces (for a streamed response); text cells never start a formula."""
    header, rows = result_table(row, x_column)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([neutralise(h) for h in header])
    for count, values in enumerate(rows, 1):
        writer.writerow([neutralise(v) for v in values])
        if count % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
