"""File extractor and loader: CSV, JSON Lines, Parquet (and Excel workbooks to read); text encodings; compression.

``.gz``, ``.bz2``, ``.xz`` and ``.zst`` compress CSV and JSON Lines files
(zstd through ``backports.zstd``, which clickhouse-connect already brings);
Parquet compresses inside the file (``parquet_compression``). Reading and
writing are streamed: one batch of rows in memory at a time.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import json
import lzma
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from clinicflow.toolkit.base import Batch, RunContext, ToolkitError, json_default, nested_as_json

FileFormat = Literal["csv", "jsonl", "parquet", "xlsx"]
WritableFormat = Literal["csv", "jsonl", "parquet"]  # a workbook is read, never written


def _zstd_open(path: Path, mode: str, **kwargs: Any) -> IO[Any]:
    try:
        from compression import zstd  # Python 3.14+
    except ImportError:
        from backports import zstd
    stream: IO[Any] = zstd.open(path, mode, **kwargs)
    return stream


_OPENERS: dict[str, Any] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": _zstd_open}


def compression_of(path: Path) -> str | None:
    """The compression suffix of ``path`` (``.gz`` ...) or None."""
    return path.suffix.lower() if path.suffix.lower() in _OPENERS else None


def format_of(path: Path) -> FileFormat:
    """Guess the format from the suffix under any compression suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _OPENERS:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last == ".csv":
        return "csv"
    if last in (".jsonl", ".ndjson"):
        return "jsonl"
    if last == ".parquet":
        return "parquet"
    if last in (".xlsx", ".xlsm"):
        return "xlsx"
    raise ToolkitError(f"{path}: cannot tell the file format from the name; set format to csv, jsonl, parquet or xlsx")


def open_text(path: Path, mode: Literal["r", "w"], encoding: str) -> IO[str]:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise ToolkitError(f"{path}: unknown text encoding {encoding!r}") from None
    if mode == "r" and codec == "utf-8":
        encoding = "utf-8-sig"  # Excel's "CSV UTF-8" starts with a byte-order mark: not part of the first name
    opener = _OPENERS.get(compression_of(path) or "")
    if opener is None:
        return open(path, mode, encoding=encoding, newline="")
    text_stream: IO[str] = opener(path, mode + "t", encoding=encoding, newline="")
    return text_stream


class FileExtractor:
    """Read files matching ``path`` (a path or a glob) as batches of ``batch_size`` rows."""

    def __init__(
        self,
        path: str,
        *,
        format: FileFormat | None = None,
        encoding: str = "utf-8",
        batch_size: int = 10_000,
        delimiter: str = ",",
        empty_as_null: bool = True,
        sheet: str | None = None,
    ) -> None:
        self.path, self.format, self.encoding = path, format, encoding
        self.batch_size, self.delimiter, self.empty_as_null = batch_size, delimiter, empty_as_null
        self.sheet = sheet

    def files(self) -> list[Path]:
        pattern = Path(self.path)
        if any(ch in self.path for ch in "*?["):
            found = sorted(Path(pattern.anchor or ".").glob(str(pattern.relative_to(pattern.anchor or "."))))
        else:
            found = [pattern] if pattern.exists() else []
        if not found:
            raise ToolkitError(f"file extractor: no file matches {self.path!r}")
        return found

    def extract(self, ctx: RunContext) -> Iterator[Batch]:
        for path in self.files():
            fmt = self.format or format_of(path)
            try:
                if fmt == "parquet":
                    yield from self._parquet(path)
                elif fmt == "xlsx":
                    yield from self._xlsx(path)
                elif fmt == "csv":
                    yield from self._csv(path)
                else:
                    yield from self._jsonl(path)
            except UnicodeDecodeError as exc:
                raise ToolkitError(f"{path}: not valid {self.encoding} text at byte {exc.start}") from None

    def _parquet(self, path: Path) -> Iterator[Batch]:
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as reader:
            for record_batch in reader.iter_batches(batch_size=self.batch_size):
                columns = tuple(record_batch.schema.names)
                data = [record_batch.column(i).to_pylist() for i in range(len(columns))]
                yield Batch(columns, list(zip(*data, strict=False)) if data else [])

    def _xlsx(self, path: Path) -> Iterator[Batch]:
        """A worksheet's rows with their cells' types (numbers, date-times, text): :mod:`clinicflow.core.workbooks`."""
        from clinicflow.core.workbooks import WorkbookError, open_sheet

        try:
            with open_sheet(path, str(path), self.sheet) as sheet:
                yield from self._batches(tuple(sheet.header), sheet.rows)
        except WorkbookError as exc:
            raise ToolkitError(str(exc)) from None

    def _batches(self, columns: tuple[str, ...], records: Iterable[Iterable[Any]]) -> Iterator[Batch]:
        """``records`` as batches of ``batch_size`` rows (an empty text as None when ``empty_as_null``)."""
        rows: list[tuple[Any, ...]] = []
        for record in records:
            rows.append(tuple(None if (v == "" and self.empty_as_null) else v for v in record))
            if len(rows) >= self.batch_size:
                yield Batch(columns, rows)
                rows = []
        if rows:
            yield Batch(columns, rows)

    def _csv(self, path: Path) -> Iterator[Batch]:
        with open_text(path, "r", self.encoding) as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            header = next(reader, None)
            if header is None:
                return
            columns = tuple(header)

            def records() -> Iterator[list[str]]:
                for line_number, record in enumerate(reader, start=2):
                    if len(record) != len(columns):
                        raise ToolkitError(
                            f"{path}: line {line_number} has {len(record)} fields, the header has {len(columns)}"
                        )
                    yield record

            yield from self._batches(columns, records())

    def _jsonl(self, path: Path) -> Iterator[Batch]:
        with open_text(path, "r", self.encoding) as handle:
            records: list[dict[str, Any]] = []
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ToolkitError(f"{path}: line {line_number} is not JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise ToolkitError(f"{path}: line {line_number} is not a JSON object")
                records.append(record)
                if len(records) >= self.batch_size:
                    yield Batch.from_dicts(records)
                    records = []
            if records:
                yield Batch.from_dicts(records)


class FileLoader:
    """Write the stream to one file; format from ``format`` or the suffix, compression from the suffix.

    With ``bucket`` (an :class:`~clinicflow.connectors.objectstore.stores.ObjectStore`: a local
    folder, GCS or S3) ``path`` is the object name: the file is
    written to a temporary folder, then uploaded, and appears whole or not at all.
    """

    def __init__(
        self,
        path: str,
        *,
        format: FileFormat | None = None,
        encoding: str = "utf-8",
        delimiter: str = ",",
        parquet_compression: str = "zstd",
        bucket: Any = None,
    ) -> None:
        self.path = Path(path)
        self.format = format or format_of(self.path)
        if self.format == "xlsx":
            raise ToolkitError(f"{path}: the file loader writes csv, jsonl or parquet; xlsx is read only")
        self.encoding, self.delimiter, self.parquet_compression = encoding, delimiter, parquet_compression
        self.bucket = bucket

    def load(self, batches: Iterable[Batch], ctx: RunContext) -> int:
        if self.bucket is None:
            return self._write(batches)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="toolkit-") as folder:
            local = Path(folder) / self.path.name
            written = FileLoader(
                str(local),
                format=self.format,
                encoding=self.encoding,
                delimiter=self.delimiter,
                parquet_compression=self.parquet_compression,
            )._write(batches)
            self.bucket.write(self.path.as_posix(), local)
        return written

    def _write(self, batches: Iterable[Batch]) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(".partial-" + self.path.name)  # keeps the suffixes: same compression
        try:
            written = self._parquet(batches, partial) if self.format == "parquet" else self._text(batches, partial)
        except BaseException:
            partial.unlink(missing_ok=True)  # a failed write leaves nothing behind; the previous file stays
            raise
        partial.replace(self.path)  # readers never see a half-written file
        return written

    def _aligned(self, header: tuple[str, ...], batch: Batch, number: int) -> list[tuple[Any, ...]]:
        """The batch's rows in the header's column order; a column the header lacks is an error (one header)."""
        if batch.columns == header:
            return list(batch.rows)
        new = [c for c in batch.columns if c not in header]
        if new:
            raise ToolkitError(
                f"{self.path.name}: column(s) {', '.join(map(repr, new))} first appear in batch {number}, after the "
                f"file's columns were fixed by batch 1 ({', '.join(header)}): name every column in the first batch "
                "(a `types` or `select` transform), or load a table instead"
            )
        at = [batch.columns.index(c) if c in batch.columns else None for c in header]
        return [tuple(row[i] if i is not None else None for i in at) for row in batch.rows]

    def _text(self, batches: Iterable[Batch], target: Path) -> int:
        written = 0
        with open_text(target, "w", self.encoding) as out:
            writer = csv.writer(out, delimiter=self.delimiter, lineterminator="\n") if self.format == "csv" else None
            header: tuple[str, ...] | None = None
            for number, batch in enumerate(batches, 1):
                if writer is not None:
                    if header is None:
                        header = tuple(batch.columns)
                        writer.writerow(header)
                    rows = self._aligned(header, batch, number)
                    writer.writerows(["" if v is None else nested_as_json(v) for v in row] for row in rows)
                else:
                    for row in batch.rows:
                        out.write(json.dumps(dict(zip(batch.columns, row, strict=False)), default=json_default) + "\n")
                written += len(batch)
        return written

    def _parquet(self, batches: Iterable[Batch], target: Path) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer: Any = None
        written = 0
        try:
            for number, batch in enumerate(batches, 1):
                if not batch.rows:
                    continue
                if writer is None:
                    columns = list(zip(*batch.rows, strict=False))
                    pairs = zip(batch.columns, columns, strict=True)
                    table = pa.Table.from_arrays(
                        [_arrow_column(name, c, None, number) for name, c in pairs], names=list(batch.columns)
                    )
                    writer = pq.ParquetWriter(target, table.schema, compression=self.parquet_compression)
                else:
                    names = tuple(writer.schema.names)
                    columns = list(zip(*self._aligned(names, batch, number), strict=False))
                    table = pa.Table.from_arrays(
                        [
                            _arrow_column(name, c, writer.schema.field(i).type, number)
                            for i, (name, c) in enumerate(zip(names, columns, strict=True))
                        ],
                        schema=writer.schema,
                    )
                writer.write_table(table)
                written += len(batch)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            pq.write_table(pa.table({}), target)
        return written


def _arrow_column(name: str, values: Any, arrow_type: Any, batch: int) -> Any:
    """One column as an Arrow array; a value of another type than the column's names the column and batch."""
    import pyarrow as pa

    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        fixed = f" (typed {arrow_type} by the first batch)" if arrow_type is not None else ""
        raise ToolkitError(
            f"column {name!r}{fixed}: batch {batch} holds a value of another type ({type(exc).__name__}; values are "
            "not shown): give the column one type with a `types` transform"
        ) from None
