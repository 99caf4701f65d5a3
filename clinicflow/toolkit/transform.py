"""Transformers: lambda, type conversion (strict or lenient with dead letters), column rename/select/derive."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from clinicflow.toolkit.base import Batch, DeadLetter, DeadLetterSink, MemoryDeadLetters, RunContext, ToolkitError

# A type, or a date/datetime with its strptime format: "date:%d.%m.%Y" (a European export), "datetime:%m/%d/%Y %H:%M".
TypeName = str

_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n", ""}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        return _to_datetime(text).date()  # an ISO date-time's date ("2024-03-04T10:30:00")


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"not an integer: {value!r}")
        return int(value)
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def _to_decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal: {value!r}") from None


def _formatted(kind: str, pattern: str) -> Callable[[Any], Any]:
    """A date or datetime converter for one strptime format (a date object or an ISO text passes as well)."""

    def convert(value: Any) -> Any:
        if isinstance(value, (date, datetime)):
            return CONVERTERS[kind](value)
        parsed = datetime.strptime(str(value).strip(), pattern)
        return parsed.date() if kind == "date" else parsed

    return convert


def converter(type_name: str) -> Callable[[Any], Any]:
    """The converter of ``type_name`` (see :data:`TypeName`); ToolkitError for an unknown one."""
    if type_name in CONVERTERS:
        return CONVERTERS[type_name]
    kind, _, pattern = type_name.partition(":")
    if kind in ("date", "datetime") and "%" in pattern:
        return _formatted(kind, pattern)
    raise ToolkitError(
        f"unknown type {type_name!r}: one of {', '.join(sorted(CONVERTERS))}, or date:FORMAT / datetime:FORMAT "
        "with a strptime format (date:%d.%m.%Y)"
    )


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": _to_int,
    "float": float,
    "decimal": _to_decimal,
    "str": str,
    "bool": _to_bool,
    "date": _to_date,
    "datetime": _to_datetime,
}


class LambdaTransformer:
    """Apply a function per row (dict -> dict, or None to drop the row) or per batch (Batch -> Batch)."""

    def __init__(self, function: Callable[..., Any], per: Literal["row", "batch"] = "row") -> None:
        self.function = function
        self.per = per

    def transform(self, batch: Batch, ctx: RunContext) -> Batch:
        try:
            return self._apply(batch)
        except ToolkitError:
            raise
        except Exception as exc:
            # Raised inside the pipeline's own function: say so, with its line, before the loader reports the
            # stream's failure as its own ("postgres load ... failed after 0 rows: AttributeError").
            raise ToolkitError(f"{self._where(exc)} raised {type(exc).__name__}: {exc}") from exc

    def _where(self, exc: BaseException) -> str:
        import traceback

        name = getattr(self.function, "__name__", repr(self.function))
        code = getattr(self.function, "__code__", None)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if code and f.filename == code.co_filename]
        at = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
        return f"lambda transformer {name!r} (per {self.per}){at}"

    def _apply(self, batch: Batch) -> Batch:
        if self.per == "batch":
            out = self.function(batch)
            if not isinstance(out, Batch):
                raise ToolkitError(
                    f"lambda transformer {getattr(self.function, '__name__', self.function)!r} "
                    f"returned {type(out).__name__}, expected Batch"
                )
            return out
        records = (self.function(record) for record in batch.as_dicts())
        kept = [r for r in records if r is not None]
        return Batch.from_dicts(kept, None if kept else batch.columns)


class TypeConversionError(ToolkitError):
    """A value that does not convert in strict mode: names the row index and the column."""

    def __init__(self, step: str, row_index: int, column: str, type_name: str, reason: str) -> None:
        self.row_index, self.column = row_index, column
        super().__init__(f"{step}: row {row_index}, column {column!r}: cannot convert to {type_name} ({reason})")


class TypeConverter:
    """Convert columns by a mapping ``{column: type}``; None stays None.

    Strict (default): the first value that does not convert fails the step
    with its row index (0-based, counted over the whole stream) and column.
    Lenient: the row goes to the dead-letter sink and the stream goes on.
    """

    def __init__(
        self,
        mapping: dict[str, TypeName],
        *,
        strict: bool = True,
        dead_letters: DeadLetterSink | None = None,
        name: str = "type_conversion",
        max_rejected_fraction: float = 0.01,
    ) -> None:
        try:
            self.converters = {c: converter(t) for c, t in mapping.items()}
        except ToolkitError as exc:
            raise ToolkitError(f"{name}: {exc}") from None
        self.mapping = dict(mapping)
        self.strict = strict
        self.dead_letters = dead_letters if dead_letters is not None else MemoryDeadLetters()
        self.name = name
        self.max_rejected_fraction = max_rejected_fraction
        self.rows_seen = 0
        self.rejected = 0

    def transform(self, batch: Batch, ctx: RunContext) -> Batch:
        missing = [c for c in self.mapping if c not in batch.columns]
        if missing:
            raise ToolkitError(f"{self.name}: columns {missing} are not in the batch (has {list(batch.columns)})")
        plan = [(i, self.mapping[c], self.converters[c]) for i, c in enumerate(batch.columns) if c in self.mapping]
        out: list[tuple[Any, ...]] = []
        for row in batch.rows:
            index = self.rows_seen
            self.rows_seen += 1
            values = list(row)
            failed: tuple[str, str, str] | None = None
            for i, type_name, convert in plan:
                value = values[i]
                if value is None:
                    continue
                try:
                    values[i] = convert(value)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    # The exception's text would quote the value (patient data): keep only its type.
                    failed = (batch.columns[i], type_name, type(exc).__name__)
                    break
            if failed is None:
                out.append(tuple(values))
                continue
            column, target_type, reason = failed
            if self.strict:
                raise TypeConversionError(self.name, index, column, target_type, reason)
            self.rejected += 1
            self.dead_letters.put(
                DeadLetter(
                    ctx.step or self.name,
                    index,
                    column,
                    f"cannot convert to {target_type}: {reason}",
                    dict(zip(batch.columns, row, strict=False)),
                    run_id=ctx.run_id,
                    tool=self.name,
                )
            )
        return Batch(batch.columns, out)


class ColumnTransformer:
    """Rename, derive, then select columns (in that order)."""

    def __init__(
        self,
        *,
        rename: dict[str, str] | None = None,
        select: list[str] | None = None,
        derive: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
        name: str = "columns",
    ) -> None:
        self.rename = dict(rename or {})
        self.select = list(select) if select is not None else None
        self.derive = dict(derive or {})
        self.name = name

    def transform(self, batch: Batch, ctx: RunContext) -> Batch:
        missing = [c for c in self.rename if c not in batch.columns]
        if missing:
            raise ToolkitError(f"{self.name}: cannot rename missing columns {missing}")
        columns = tuple(self.rename.get(c, c) for c in batch.columns)
        rows = batch.rows
        if self.derive:
            derived_names = tuple(n for n in self.derive if n not in columns)
            index = {c: i for i, c in enumerate(columns + derived_names)}
            new_rows = []
            for row in rows:
                record = dict(zip(columns, row, strict=False))
                values = list(row) + [None] * len(derived_names)
                for name, fn in self.derive.items():
                    values[index[name]] = fn(record)
                    record[name] = values[index[name]]
                new_rows.append(tuple(values))
            columns, rows = columns + derived_names, new_rows
        if self.select is not None:
            missing = [c for c in self.select if c not in columns]
            if missing:
                raise ToolkitError(f"{self.name}: cannot select missing columns {missing} (has {list(columns)})")
            positions = [columns.index(c) for c in self.select]
            rows = [tuple(row[p] for p in positions) for row in rows]
            columns = tuple(self.select)
        return Batch(columns, rows)
