"""Excel workbooks (.xlsx) as uploads: the first worksheet written out as a CSV file, row by row.

An analyst's data often arrives as a workbook. openpyxl's read-only mode streams the sheet's XML (memory stays
bounded by a row, not by the sheet), and its cell types say what each value is: numbers are written as the
shortest text that reads back to the same float, dates and times as ISO 8601 (what the time-axis detection and
the checks read), empty cells as empty fields. The CSV then goes through the one CSV reader every processor uses.
Formulas are read as the values the spreadsheet program stored with them; the legacy binary ``.xls`` format is
named and refused (save it as .xlsx or CSV).
"""

from __future__ import annotations

import csv
import zipfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from clinicflow.processing.datafiles import DataFileError

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 .xls (and other Office binaries)


class WorkbookError(DataFileError):
    """A workbook that cannot be read as a table; the message names the file, the sheet and the cell."""


def is_workbook(path: Path) -> bool:
    """An Office Open XML spreadsheet (.xlsx, .xlsm): a ZIP holding ``xl/workbook.xml``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "xl/workbook.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


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


def workbook_to_csv(path: Path, out_path: Path, name: str) -> str:
    """Write the first worksheet of workbook ``path`` (uploaded as ``name``) to ``out_path`` as UTF-8 CSV.

    The first non-empty row is the header; empty rows are left out. Returns the sheet's title. A value in a
    column with no header is an error naming its cell, never a column dropped.
    """
    from openpyxl import load_workbook

    # A file, not a path: openpyxl refuses a path without an Excel suffix (as the service keeps an upload).
    with open(path, "rb") as handle:
        try:
            book = load_workbook(handle, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a damaged package
            raise WorkbookError(f"{name}: cannot read as an Excel workbook: {type(exc).__name__}: {exc}") from None
        try:
            return _write_first_sheet(book, out_path, name)
        finally:
            book.close()


def _write_first_sheet(book: Any, out_path: Path, name: str) -> str:
    from openpyxl.utils import get_column_letter

    sheet = book.worksheets[0] if book.worksheets else None
    if sheet is None:
        raise WorkbookError(f"{name}: the workbook has no worksheet")
    width, header_row = 0, 0
    with open(out_path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        for row_number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            cells = list(row)
            while cells and cells[-1] in (None, ""):
                cells.pop()
            if not cells:
                continue
            if not width:
                width, header_row = len(cells), row_number
                if any(c in (None, "") for c in cells):
                    column = get_column_letter(next(i for i, c in enumerate(cells, 1) if c in (None, "")))
                    raise WorkbookError(f"{name}: sheet {sheet.title!r}: header cell {column}{row_number} is empty")
            elif len(cells) > width:
                column = get_column_letter(next(i for i, c in enumerate(cells, 1) if i > width and c not in (None, "")))
                raise WorkbookError(
                    f"{name}: sheet {sheet.title!r}: cell {column}{row_number} has a value but no header"
                    f" (row {header_row} is read as the header: delete any title rows above the table)"
                )
            writer.writerow([_cell_text(c) for c in cells] + [""] * (width - len(cells)))
    if not width:
        raise WorkbookError(f"{name}: sheet {sheet.title!r} is empty")
    return str(sheet.title)
