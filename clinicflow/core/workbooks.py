"""Excel workbooks (.xlsx, .xlsm): one worksheet's rows, streamed and typed as their cells are.

openpyxl's read-only mode streams the sheet's XML (memory bounded by a row, not by the workbook); its cells say
what each value is (a number, a date-time, text, a boolean). Formulas are read as the values the spreadsheet
program stored with them. The first non-empty row is the header; empty rows are left out; a value in a column
with no header is an error naming its cell, never a column dropped; title rows above the table (one cell
each, then a wider row) are left out. The processing service stores an uploaded
workbook's sheet as CSV (:mod:`clinicflow.processing.workbooks`); the pipeline toolkit's file extractor reads it
as rows (:mod:`clinicflow.toolkit.files`).
"""

from __future__ import annotations

import contextlib
import itertools
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinicflow.core.errors import ClinicflowError

TITLE_LOOKAHEAD_ROWS = 10  # rows read ahead for the header under one-cell title rows


class WorkbookError(ClinicflowError, ValueError):
    """A workbook that cannot be read as a table; the message names the file, the sheet and the cell."""


def is_workbook(path: Path) -> bool:
    """An Office Open XML spreadsheet (.xlsx, .xlsm): a ZIP holding ``xl/workbook.xml``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "xl/workbook.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


@dataclass
class SheetRows:
    """A worksheet as a table: its title, its header's names, and its rows (each as long as the header)."""

    title: str
    header: list[str]
    rows: Iterator[list[Any]]
    titles: list[str]  # every worksheet's, in the workbook's order


def _trimmed(row: tuple[Any, ...]) -> list[Any]:
    cells = list(row)
    while cells and cells[-1] in (None, ""):
        cells.pop()
    return cells


@contextlib.contextmanager
def open_sheet(path: Path, name: str, sheet: str | None = None, *, first_table: bool = False) -> Iterator[SheetRows]:
    """The worksheet ``sheet`` of workbook ``path``, known to its user as ``name``; default the first, or with
    ``first_table`` the first whose table has two columns or more (a cover sheet of title lines, "Lab results",
    "Exported 2024-03-14", before the data is passed over). The workbook is opened once."""
    from openpyxl import load_workbook

    # A file, not a path: openpyxl refuses a path without an Excel suffix (as the service keeps an upload).
    with open(path, "rb") as handle:
        try:
            book = load_workbook(handle, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a damaged package
            raise WorkbookError(f"{name}: cannot read as an Excel workbook: {type(exc).__name__}: {exc}") from None
        try:
            if sheet is None and first_table and len(book.worksheets) > 1:
                sheet = next((title for title in book.sheetnames if _is_table(book, name, title)), None)
            yield _sheet_rows(book, name, sheet)
        finally:
            book.close()


def _is_table(book: Any, name: str, title: str) -> bool:
    try:
        return len(_sheet_rows(book, name, title).header) > 1
    except WorkbookError:
        return False


def _sheet_rows(book: Any, name: str, wanted: str | None) -> SheetRows:
    from openpyxl.utils import get_column_letter

    if wanted is not None and wanted not in book.sheetnames:
        raise WorkbookError(f"{name}: no sheet {wanted!r} (sheets: {', '.join(book.sheetnames)})")
    sheet = book[wanted] if wanted is not None else (book.worksheets[0] if book.worksheets else None)
    if sheet is None:
        raise WorkbookError(f"{name}: the workbook has no worksheet")
    filled = (
        (number, cells)
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1)
        if (cells := _trimmed(row))
    )
    first = next(filled, None)
    if first is None:
        raise WorkbookError(f"{name}: sheet {sheet.title!r} is empty")
    (header_row, header), ahead = first, []
    if len(header) == 1:
        # Title rows above the table ("Fee schedule 2025"): a wider row within the next few is the header; with
        # none, the sheet is one column and the rows read ahead are its data.
        ahead = list(itertools.islice(filled, TITLE_LOOKAHEAD_ROWS))
        wider = next((i for i, (_, cells) in enumerate(ahead) if len(cells) > 1), None)
        if wider is not None:
            (header_row, header), ahead = ahead[wider], ahead[wider + 1 :]
    numbered = itertools.chain(ahead, filled)
    if any(c in (None, "") for c in header):
        column = get_column_letter(next(i for i, c in enumerate(header, 1) if c in (None, "")))
        raise WorkbookError(f"{name}: sheet {sheet.title!r}: header cell {column}{header_row} is empty")
    width = len(header)

    def rows() -> Iterator[list[Any]]:
        for number, cells in numbered:
            if len(cells) > width:
                at = next(i for i, c in enumerate(cells, 1) if i > width and c not in (None, ""))
                raise WorkbookError(
                    f"{name}: sheet {sheet.title!r}: cell {get_column_letter(at)}{number} has a value but no header"
                    f" (row {header_row} is read as the header: delete any title rows above the table)"
                )
            yield cells + [None] * (width - len(cells))

    return SheetRows(str(sheet.title), [str(c).strip() for c in header], rows(), list(book.sheetnames))
