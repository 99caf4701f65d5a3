"""Data files: format detection, metadata (size, sha256, columns, row count) and chunked reads.

Every read is streamed: one chunk of rows (``chunk_rows``) in memory at a time. A CSV's delimiter and
decimal mark are read from its first lines (:mod:`clinicflow.processing.csv_dialect`): a spreadsheet's
European export (``;`` between fields, ``71,6``) reads as numbers, like a comma-separated file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
import pandas as pd

from clinicflow.core import settings
from clinicflow.core.errors import ClinicflowError
from clinicflow.processing.csv_dialect import csv_file_options, csv_units, footer_offset

T = TypeVar("T")
DataFormat = Literal["csv", "parquet"]
FORMATS: tuple[str, ...] = ("csv", "parquet")
PARQUET_MAGIC = b"PAR1"
DEFAULT_CHUNK_ROWS = 500_000
# Caps on the parameters that set a request's memory (rows held at once, points kept per series).
MAX_CHUNK_ROWS = 2_000_000
MAX_POINTS = 200_000
DEFAULT_MAX_UPLOAD_MB = 512


def max_upload_bytes() -> int:
    """The largest data file accepted: ``CLINICFLOW_PROCESSING_MAX_UPLOAD_MB`` (default 512) MiB."""
    return settings.processing_max_upload_mb(DEFAULT_MAX_UPLOAD_MB) << 20


class DataFileError(ClinicflowError, ValueError):
    """A data file cannot be read as its format; the message names the file."""


@dataclass(frozen=True)
class FileMetadata:
    name: str
    size_bytes: int
    sha256: str
    format: DataFormat
    columns: list[dict[str, str]]  # [{"name": ..., "dtype": ...}] as read from the first chunk
    row_count: int
    footer_bytes: int = 0  # lines of text below a CSV's table, left out (csv_dialect.footer_offset)


def detect_format(path: Path, name: str) -> DataFormat:
    """Parquet by its magic bytes, CSV by the name's suffix (.csv, .txt, .tsv; the delimiter from the header)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == PARQUET_MAGIC:
        return "parquet"
    if name.lower().endswith((".csv", ".txt", ".tsv")):
        return "csv"
    if name.lower().endswith(".parquet"):
        raise DataFileError(f"{name}: named .parquet but not a Parquet file")
    if name.lower().endswith((".xls", ".xlsx", ".xlsm")):
        # .xlsx is converted on upload (processing/workbooks.py); the 97-2003 binary format has no reader here.
        raise DataFileError(f"{name}: not a readable Excel workbook (an .xls file: save it as .xlsx or CSV)")
    raise DataFileError(f"{name}: unsupported format (expected CSV, Parquet or an Excel .xlsx workbook)")


def file_sha256(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def iter_chunks(
    path: Path,
    fmt: str,
    *,
    columns: list[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    name: str | None = None,
) -> Iterator[pd.DataFrame]:
    """The file's rows as DataFrames of at most ``chunk_rows`` rows (only ``columns`` when given)."""
    label = name or path.name
    with _reading(label, fmt):
        if fmt == "csv":
            options = csv_file_options(path)
            end = footer_offset(path, options)
            with contextlib.ExitStack() as stack:
                source: Any = path
                if end is not None:  # the lines below the table (a device's footer) are not rows
                    source = stack.enter_context(io.BufferedReader(_UpTo(stack.enter_context(open(path, "rb")), end)))
                reader = stack.enter_context(
                    pd.read_csv(source, usecols=columns, chunksize=chunk_rows, **options._asdict())
                )
                yield from reader
        elif fmt == "parquet":
            for batch in _parquet_batches(path, columns, chunk_rows):
                yield batch.to_pandas()
        else:
            raise DataFileError(f"{label}: unsupported format {fmt!r}")


class _UpTo(io.RawIOBase):
    """A binary file read up to a byte offset, then at its end."""

    def __init__(self, raw: Any, end: int) -> None:
        self._raw, self._left = raw, end

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        count = self._raw.readinto(view) or 0
        self._left -= count
        return count


def iter_column(
    path: Path, fmt: str, column: str, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, name: str | None = None
) -> Iterator[np.ndarray | pd.Series]:
    """One column in chunks of at most ``chunk_rows`` rows: a Parquet column of integers or floats as float64
    arrays (nulls as NaN, as pandas' ``to_numpy(dtype=float, na_value=nan)`` gives), without a DataFrame;
    any other column as a pandas Series."""
    label = name or path.name
    with _reading(label, fmt):
        if fmt != "parquet":
            for chunk in iter_chunks(path, fmt, columns=[column], chunk_rows=chunk_rows, name=name):
                yield chunk[column]
            return
        import pyarrow as pa

        for batch in _parquet_batches(path, [column], chunk_rows):
            values = batch.column(0)
            if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
                yield np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
            else:
                yield batch.to_pandas()[column]


def read_ahead(chunks: Iterator[T]) -> Iterator[T]:
    """``chunks`` with the next one read in a thread while the caller works on the current one (pyarrow
    decodes without the GIL): two chunks in memory instead of one. Errors reach the caller in order."""
    from concurrent.futures import ThreadPoolExecutor

    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clinicflow-read-ahead") as pool:
        pending = pool.submit(next, chunks, end)
        try:
            while (chunk := pending.result()) is not end:
                pending = pool.submit(next, chunks, end)
                yield cast(T, chunk)
        finally:
            if not pending.cancel():
                pending.exception()  # a stop before the end: the read under way finishes before the close
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def _parquet_batches(path: Path, columns: list[str] | None, chunk_rows: int) -> Iterator[Any]:
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(path, memory_map=True).iter_batches(batch_size=chunk_rows, columns=columns)


@contextlib.contextmanager
def _reading(label: str, fmt: str) -> Iterator[None]:
    """Reader errors as :class:`DataFileError` naming the file (pandas/pyarrow name the column or line)."""
    try:
        yield
    except DataFileError:
        raise
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        # pandas/pyarrow messages name the column or line, never whole rows.
        raise DataFileError(f"{label}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("pyarrow"):
            raise DataFileError(f"{label}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from None
        raise


def describe_file(path: Path, name: str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> FileMetadata:
    """Metadata of a local copy of a data file; raises :class:`DataFileError` for an unreadable file."""
    size, sha256 = file_sha256(path)
    fmt = detect_format(path, name)
    columns: list[dict[str, str]] = []
    rows = 0
    footer: int | None = None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad footer
            raise DataFileError(f"{name}: cannot read as parquet: {type(exc).__name__}: {exc}") from None
        schema = parquet.schema_arrow
        columns = [{"name": field.name, "dtype": str(field.type)} for field in schema]
        rows = parquet.metadata.num_rows
    else:
        for chunk in iter_chunks(path, fmt, chunk_rows=chunk_rows, name=name):
            if not columns:
                columns = [{"name": str(c), "dtype": str(t)} for c, t in chunk.dtypes.items()]
            rows += len(chunk)
        if not columns:
            raise DataFileError(f"{name}: no header row")
        options = csv_file_options(path)
        for column, unit in zip(columns, csv_units(path, options), strict=False):
            column["unit"] = unit  # the skipped units row, kept with the column it describes
        footer = footer_offset(path, options)
    return FileMetadata(
        name=name,
        size_bytes=size,
        sha256=sha256,
        format=fmt,
        columns=columns,
        row_count=rows,
        footer_bytes=size - footer if footer is not None else 0,
    )


def is_nested(value: Any) -> bool:
    """A Parquet struct or list cell, or a JSON object: a value pandas reads as a dict, list or array."""
    return isinstance(value, (dict, list, tuple, np.ndarray))


def plain_value(value: Any) -> Any:
    """``value`` with numpy arrays and scalars inside it as Python lists and numbers (JSON can hold it)."""
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def preview(path: Path, fmt: str, name: str, rows: int = 20, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict[str, Any]:
    """The first ``rows`` rows, the columns with their types, and per column: count, nulls, min, max, mean
    (numeric columns), streamed over the whole file."""
    import math

    head: list[dict[str, Any]] = []
    stats: dict[str, dict[str, Any]] = {}
    total = 0
    for chunk in iter_chunks(path, fmt, chunk_rows=chunk_rows, name=name):
        if not head:
            first = chunk.head(rows)
            head = [
                {str(k): plain_value(v) for k, v in record.items()}
                for record in first.astype(object).where(first.notna(), None).to_dict("records")
            ]
        for column in chunk.columns:
            series = chunk[column]
            entry = stats.setdefault(
                str(column), {"dtype": str(series.dtype), "count": 0, "nulls": 0, "min": None, "max": None, "sum": 0.0}
            )
            entry["nulls"] += int(series.isna().sum())
            entry["count"] += int(series.notna().sum())
            numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            if numeric and series.notna().any():
                low, high = float(series.min()), float(series.max())
                entry["min"] = low if entry["min"] is None else min(entry["min"], low)
                entry["max"] = high if entry["max"] is None else max(entry["max"], high)
                entry["sum"] += float(series.sum())
            else:
                entry["sum"] = None
        total += len(chunk)

    def finite(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value.isoformat() if hasattr(value, "isoformat") else value

    columns = []
    for column, entry in stats.items():
        mean = entry["sum"] / entry["count"] if entry["sum"] is not None and entry["count"] else None
        columns.append(
            {
                "name": column,
                "dtype": entry["dtype"],
                "count": entry["count"],
                "nulls": entry["nulls"],
                "min": finite(entry["min"]),
                "max": finite(entry["max"]),
                "mean": finite(mean),
            }
        )
    return {
        "name": name,
        "rows": total,
        "columns": columns,
        "head": [{k: finite(v) for k, v in record.items()} for record in head],
    }
