"""How to read a CSV file, from its first bytes: encoding, delimiter, decimal mark, quote character, a units row
to skip, or no header at all. Nothing else is guessed; the result is ``pandas.read_csv`` keyword arguments."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple

from clinicflow.core.text_encoding import text_encoding

CSV_DELIMITERS = (",", ";", "\t", "|")
CSV_SNIFF_BYTES = 64 << 10
_COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+")
_POINT_DECIMAL = re.compile(r"[+-]?\d+\.\d+")


class CsvOptions(NamedTuple):
    """``pandas.read_csv`` keyword arguments for one CSV file (custom scripts get them as they are)."""

    sep: str = ","
    decimal: str = "."
    encoding: str = "utf-8"
    quotechar: str = '"'
    skiprows: tuple[int, ...] = ()  # (1,): a units row under the header
    header: int | None = 0  # None: the first line is data (a file of numbers only, as numpy.savetxt writes)
    names: tuple[str, ...] | None = None  # the columns of a file without a header: column_1, column_2, ...
    # Missing-value marks beside pandas' own (NA, N/A, null, ...): a dash, as exports and hand-kept sheets write.
    na_values: tuple[str, ...] = ("--", "-", "\u2014", "\u2013")


# A cell of a units row: a unit as devices and PhysioNet export them ("mV", "[mmHg]", "hh:mm:ss.mmm", "bpm");
# a unit not listed leaves the row as data (the column then reads as text: "not numeric", never a lost row).
_UNIT = re.compile(
    r"[\[(]?(?:[munpkµμ]?(?:V|s|m|g|Hz|mol|L)|mmHg|cmH2O|bpm|/min|%|°?[CF]|degC|degF|kg|lb|cm|mm|in|"
    r"mg/dL|mmol/L|ms|sec|min|h|hh:mm:ss(?:\.m+)?|m+:ss(?:\.m+)?|samples?|adu|units?|mV/s|L/min|kPa|"
    r"breaths/min|rpm|mm/s|m/s\^?2|g/dL|IU/L|ppm)[\])]?",
    re.IGNORECASE,
)
_MISSING = {"", "na", "n/a", "nan", "null", "none", "-"}


def csv_options(head: bytes) -> CsvOptions:
    """How to read a CSV file starting with ``head`` (its first bytes): delimiter, decimal mark, encoding,
    quote character, and a units row to skip.

    The encoding is UTF-8, UTF-16 by its BOM, else the Western code page charset-normalizer finds (a
    spreadsheet's "CSV" export on Windows is cp1252). The delimiter is the one of ``, ; tab |`` that cuts
    the header line into the most fields (a comma on a tie); with another delimiter than the comma,
    numbers written with a decimal comma and none with a point make the comma the decimal mark. A header
    whose every name is in single quotes (PhysioNet's exports) sets ``'`` as the quote character. A second
    line of units only (``'mV'``, ``[mmHg]``) above numbers is skipped (:func:`csv_units` reads it). A first line
    of numbers only is data (columns ``column_1``...); lines of metadata above the table (a device's export) are
    skipped (:func:`_preamble_length`). Nothing else is guessed.
    """
    cut = len(head) >= CSV_SNIFF_BYTES
    encoding = text_encoding(head, cut=cut) or "utf-8"  # not text: read as UTF-8, whose error names the byte
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    lines = text.splitlines()[:50]
    if cut and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    first = _preamble_length(lines)
    lines = lines[first:]
    if not lines:
        return CsvOptions(encoding=encoding)
    options = _table_options(lines, encoding)
    if not first:
        return options
    # Metadata lines above the table (their blank lines too): skipped by their line numbers in the file.
    return options._replace(skiprows=(*range(first), *(first + row for row in options.skiprows)))


def _table_options(lines: list[str], encoding: str) -> CsvOptions:
    widths = {d: len(next(csv.reader([lines[0]], delimiter=d), [])) for d in CSV_DELIMITERS}
    sep = max(CSV_DELIMITERS, key=lambda d: (widths[d], d == ","))
    if widths[sep] <= 1:
        sep = WHITESPACE if _whitespace_columns(lines) else ","
    header = _split(lines[0], sep, '"')
    quotechar = "'" if header and all(len(v) >= 2 and v[0] == v[-1] == "'" for v in header) else '"'
    rows = [_split(line, sep, quotechar) for line in lines[1:]]
    decimal = "."
    if sep != ",":
        values = [v for row in (header, *rows) for v in row]
        comma = any(_COMMA_DECIMAL.fullmatch(v) for v in values)
        point = any(_POINT_DECIMAL.fullmatch(v) for v in values)
        decimal = "," if comma and not point else "."
    if header and all(_is_number(v, decimal) for v in header):
        # No header: numbers only from the first line (numpy.savetxt, a device's dump, a dataset's CSV). Read as
        # a header, the first row would be lost and the columns named by its values.
        names = tuple(f"column_{i}" for i in range(1, len(header) + 1))
        return CsvOptions(sep, decimal, encoding, quotechar, (), None, names)
    skiprows = (1,) if _is_units_row(rows, decimal) else ()
    return CsvOptions(sep, decimal, encoding, quotechar, skiprows)


WHITESPACE = r"\s+"  # pandas' whitespace delimiter: any run of spaces and tabs (numpy.savetxt's columns)


def _fields(line: str) -> int:
    return max(len(next(csv.reader([line], delimiter=d), [])) for d in CSV_DELIMITERS)


def _preamble_length(lines: list[str]) -> int:
    """How many lines of metadata stand above the table: a device's export (an Apple Watch ECG: ``Name,...``,
    ``Sample Rate,512 hertz``, ``Unit,µV``, a blank line, then the samples). The lines up to the last blank line,
    when the ten or more lines after it share one shape and end in rows of numbers, and no line above it is a
    row of numbers (that is a table with a blank line in it); else 0."""
    blanks = [i for i, line in enumerate(lines) if not line.strip()]
    if not blanks:
        return 0
    start = blanks[-1] + 1
    block = lines[start:]
    if len(block) < 10 or len({_fields(line) for line in block}) != 1 or not _numbers_only(block[-1]):
        return 0
    above = [line for line in lines[:start] if line.strip()]
    if not above or any(_numbers_only(line) for line in above):
        return 0
    if _numbers_only(block[0]) and _fields(above[-1]) == _fields(block[0]) > 1:
        return 0  # the table's header with a blank line under it ("t,v", "", "0,1", ...)
    return start


def _numbers_only(line: str) -> bool:
    cells = [c.strip() for c in re.split(r"[,;\t|]|\s+", line.strip()) if c.strip()]
    return bool(cells) and all(_is_number(c, ".") for c in cells)


def _split(line: str, sep: str, quotechar: str) -> list[str]:
    if sep == WHITESPACE:
        return line.split()
    return [v.strip() for v in next(csv.reader([line], delimiter=sep, quotechar=quotechar), [])]


def _whitespace_columns(lines: list[str]) -> bool:
    """Columns cut by spaces: every line splits on whitespace into the same number (two or more) of fields."""
    counts = {len(line.split()) for line in lines if line.strip()}
    return len(counts) == 1 and counts.pop() >= 2


def _is_number(value: str, decimal: str) -> bool:
    try:
        float(value.replace(decimal, ".") if decimal != "." else value)
    except ValueError:
        return False
    return True


def _is_units_row(rows: list[list[str]], decimal: str) -> bool:
    """The first row is units: every cell a known unit, and numbers in most of the rows below one of them."""
    if len(rows) < 2 or not rows[0]:
        return False
    first = rows[0]
    if any(v.lower() in _MISSING or len(v) > 24 or _is_number(v, decimal) for v in first):
        return False
    if not all(_UNIT.fullmatch(v) for v in first):
        return False  # a row of names ("Sam,Min") is data: a units row holds units only
    below = rows[1:]
    for column in range(len(first)):
        cells = [row[column] for row in below if column < len(row) and row[column].lower() not in _MISSING]
        if cells and sum(_is_number(v, decimal) for v in cells) >= 0.8 * len(cells):
            return True
    return False


def csv_units(path: Path, options: CsvOptions) -> list[str]:
    """The units row :func:`csv_options` found (an empty list when there is none)."""
    skipped = set(options.skiprows)
    header = next(i for i in range(len(skipped) + 1) if i not in skipped)  # the line after any metadata lines
    if options.header is None or header + 1 not in skipped:
        return []
    with open(path, encoding=options.encoding, newline="") as handle:
        for _ in range(header):
            next(handle, None)
        if options.sep == WHITESPACE:
            next(handle, None)
            return next(handle, "").split()
        reader = csv.reader(handle, delimiter=options.sep, quotechar=options.quotechar)
        next(reader, None)
        return [v.strip() for v in next(reader, [])]


FOOTER_TAIL_BYTES = 8 << 10
MAX_FOOTER_LINES = 10


def footer_offset(path: Path, options: CsvOptions) -> int | None:
    """Where lines of text below the table start (a device export's ``End of recording``, ``Total samples,5000``),
    as a byte offset; None when the file ends with its table.

    Read from the file's last bytes: a line is the table's when it has the header's number of fields and no
    word in the first column the first lines hold numbers in (nine in ten of them); up to ten lines after the
    last such line are the footer. Files in UTF-16, or whose first lines hold no numeric column, are
    left as they are.
    """
    if options.encoding.lower().replace("-", "").startswith(("utf16", "utf32")):
        return None
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(CSV_SNIFF_BYTES).decode(options.encoding, errors="replace").lstrip("\ufeff")
        start = max(0, size - FOOTER_TAIL_BYTES)
        handle.seek(start)
        tail = handle.read()
    lines = head.splitlines()[:50]
    skipped = set(options.skiprows)
    kept = [line for i, line in enumerate(lines) if i not in skipped]
    body = kept if options.header is None else kept[1:]
    rows = [_split(line, options.sep, options.quotechar) for line in body[:-1] if line.strip()]
    if not rows:
        return None
    width = len(rows[0])
    # A column of numbers: nine in ten of the first lines' cells (a short file's footer is among them).
    numeric = [
        c
        for c in range(width)
        if sum(c < len(row) and _is_number(row[c], options.decimal) for row in rows) >= 0.9 * len(rows)
    ]
    if not numeric:
        return None

    first = numeric[0]

    def is_row(line: str) -> bool:
        # A row of the table's width is the table's unless its first number column holds words ("Total
        # samples,5000"): a bad value elsewhere ("100,n/a?") stays a row, for the reader to name.
        cells = _split(line, options.sep, options.quotechar)
        return len(cells) == width and not re.search(r"[^\W\d_]{2}", cells[first])

    offset, footer, seen = len(tail), 0, 0
    for raw in reversed(tail.splitlines(keepends=True)):
        line = raw.decode(options.encoding, errors="replace")
        if line.strip():
            if is_row(line):
                break
            seen += 1
            if seen > MAX_FOOTER_LINES:
                return None  # more text than a footer: the table's own rows, named by the reader's error
            footer = offset - len(raw)
        offset -= len(raw)
    else:
        return None  # no table row in the last bytes
    return start + footer if seen else None


def csv_file_options(path: Path) -> CsvOptions:
    """:func:`csv_options` of the file at ``path``."""
    with open(path, "rb") as handle:
        return csv_options(handle.read(CSV_SNIFF_BYTES))
