"""Excel workbooks (.xlsx) as uploads: the table's worksheet written out as a CSV file, row by row.

An analyst's data often arrives as a workbook. The sheet is streamed by :mod:`clinicflow.core.workbooks` (the
one workbook reader), its typed cells written as text: numbers as the shortest text that reads back to the same
float, dates and times as ISO 8601 (what the time-axis detection and the checks read), empty cells as empty
fields. The CSV then goes through the one CSV reader every processor uses. The legacy binary ``.xls`` format is
named and refused (save it as .xlsx or CSV).
"""

from __future__ import annotations

import csv
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from clinicflow.core.workbooks import WorkbookError, is_workbook, open_sheet
from clinicflow.processing.datafiles import DataFileError

__all__ = ["is_workbook", "workbook_to_csv"]


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back to the same float
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")  # one shape for the column: a date cell is a datetime at midnight
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value.total_seconds())
    return str(value)


def workbook_to_csv(path: Path, out_path: Path, name: str) -> tuple[str, list[str]]:
    """Write the table's sheet of workbook ``path`` (uploaded as ``name``: the first sheet with a table of two
    columns or more) to ``out_path`` as UTF-8 CSV; returns (the sheet's title, every sheet's). Not a table (a value
    under no header, an empty header cell): DataFileError naming the cell."""
    try:
        with (
            open_sheet(path, name, first_table=True) as sheet,
            open(out_path, "w", encoding="utf-8", newline="") as out,
        ):
            writer = csv.writer(out)
            writer.writerow(sheet.header)
            for row in sheet.rows:
                writer.writerow([_cell_text(c) for c in row])
            return sheet.title, sheet.titles
    except WorkbookError as exc:  # the service answers a DataFileError as a bad upload, naming the cell
        raise DataFileError(str(exc)) from None
