"""The ``data_quality`` processor: nulls, duplicate rows, ranges and types per column; a pandera schema check."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from clinicflow.processing.base import DataSource, ParamsModel, ProgressFn, json_number
from clinicflow.processing.datafiles import DEFAULT_CHUNK_ROWS, MAX_CHUNK_ROWS, is_nested, plain_value

ExpectedType = Literal["int", "float", "str", "bool", "datetime"]
# datetime is checked here, vectorised (ISO-8601 in all its variants), not by pandera's element-wise coercion.
_PANDERA_TYPES = {"int": "Int64", "float": "float64", "str": "string", "bool": "boolean"}
DATETIME_CHECK = "datetime (ISO-8601)"


class ColumnExpectation(ParamsModel):
    type: ExpectedType | None = Field(default=None, description="Type every value must convert to.")
    nullable: bool = Field(default=True, description="Whether empty values are allowed.")
    min: float | None = Field(default=None, description="Smallest allowed value.")
    max: float | None = Field(default=None, description="Largest allowed value.")


class DataQualityParams(ParamsModel):
    expect: dict[str, ColumnExpectation] | None = Field(
        default=None, description="Schema checked with pandera: column -> expectation (type, nullable, min, max)."
    )
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, ge=1, le=MAX_CHUNK_ROWS, description="Rows read per chunk.")
    max_failure_rows: int = Field(default=20, ge=0, le=10_000, description="Failing row numbers listed per check.")


def _pandera_schema(expect: dict[str, ColumnExpectation]) -> Any:
    import pandera.pandas as pa

    columns = {}
    for name, rule in expect.items():
        checks = []
        if rule.min is not None:
            checks.append(pa.Check.ge(rule.min))
        if rule.max is not None:
            checks.append(pa.Check.le(rule.max))
        dtype = _PANDERA_TYPES.get(rule.type) if rule.type else None
        columns[name] = pa.Column(dtype, checks=checks, nullable=rule.nullable, coerce=dtype is not None, required=True)
    return pa.DataFrameSchema(columns)


def data_quality(source: DataSource, params: DataQualityParams, progress: ProgressFn) -> dict[str, Any]:
    """Per column: types seen, nulls, min/max; duplicate rows; the pandera schema check when ``expect`` is given.

    Memory: one chunk, plus 8 bytes per row for the row hashes that count duplicates.
    """
    import pandera.errors

    schema = _pandera_schema(params.expect) if params.expect else None
    datetime_columns = [name for name, rule in (params.expect or {}).items() if rule.type == "datetime"]
    stats: dict[str, dict[str, Any]] = {}
    hashes: list[np.ndarray] = []
    failures: dict[tuple[str, str], dict[str, Any]] = {}
    rows = 0
    for chunk in source.chunks(None, params.chunk_rows):
        for column in chunk.columns:
            series = chunk[column]
            entry = stats.setdefault(str(column), {"dtypes": set(), "nulls": 0, "min": None, "max": None})
            entry["dtypes"].add(str(series.dtype))
            entry["nulls"] += int(series.isna().sum())
            if (
                pd.api.types.is_numeric_dtype(series)
                and not pd.api.types.is_bool_dtype(series)
                and series.notna().any()
            ):
                low, high = float(series.min()), float(series.max())
                entry["min"] = low if entry["min"] is None else min(entry["min"], low)
                entry["max"] = high if entry["max"] is None else max(entry["max"], high)
            elif pd.api.types.is_datetime64_any_dtype(series) and series.notna().any():
                # A date/time column's range as times (a Parquet timestamp's min and max were empty).
                low, high = series.min(), series.max()
                entry["min"] = low if entry["min"] is None else min(entry["min"], low)
                entry["max"] = high if entry["max"] is None else max(entry["max"], high)
        hashes.append(pd.util.hash_pandas_object(_hashable(chunk), index=False).to_numpy())
        if schema is not None:
            try:
                schema.validate(chunk.reset_index(drop=True), lazy=True)
            except pandera.errors.SchemaErrors as exc:
                _collect_failures(exc.failure_cases, rows, failures, params.max_failure_rows)
        for name in datetime_columns:
            if name in chunk.columns:
                _check_datetimes(chunk[name], name, rows, failures, params.max_failure_rows)
        rows += len(chunk)
        progress(rows / source.row_count if source.row_count else 1.0)
    all_hashes = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
    duplicates = int(len(all_hashes) - len(np.unique(all_hashes)))
    columns = {}
    for name, entry in stats.items():
        dtypes = sorted(entry["dtypes"])
        columns[name] = {
            "dtype": dtypes[0] if len(dtypes) == 1 else "mixed: " + ", ".join(dtypes),
            "nulls": entry["nulls"],
            "null_fraction": entry["nulls"] / rows if rows else 0.0,
            "min": _range_value(entry["min"]),
            "max": _range_value(entry["max"]),
        }
    failed = sorted(failures.values(), key=lambda f: (f["column"], f["check"]))
    return {
        "processing_type": "data_quality",
        "rows": rows,
        "duplicate_rows": duplicates,
        "columns": columns,
        "column_order": list(columns),  # the file's order: a JSONB object keeps its keys in an order of its own
        # Nothing expected, nothing checked: "passed" is null, not false (no check failed).
        "schema": {"checked": schema is not None, "passed": None if schema is None else not failed, "failures": failed},
    }


def _range_value(value: Any) -> Any:
    """A column's min or max for JSON: a number, or a time as ISO 8601."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return json_number(value)


def _hashable(chunk: pd.DataFrame) -> pd.DataFrame:
    """``chunk`` with nested values (a Parquet struct or list, a JSON object) as their sorted JSON text: pandas
    cannot hash a dict, and equal rows must still hash alike."""
    nested = [column for column in chunk.columns if _nested_column(chunk[column])]
    if not nested:
        return chunk
    out = chunk.copy(deep=False)
    for column in nested:
        out[column] = chunk[column].map(
            lambda v: json.dumps(plain_value(v), sort_keys=True, default=str) if is_nested(v) else v
        )
    return out


def _nested_column(series: pd.Series) -> bool:
    # A Parquet struct/list column is nested in every row and a CSV never is: its first value tells, without a
    # Python call per value of every text column.
    if series.dtype != object:
        return False
    first = series.first_valid_index()
    return first is not None and is_nested(series[first])


def parse_datetimes(values: pd.Series) -> pd.Series:
    """ISO-8601 timestamps, vectorised: any precision, ``T`` or space, ``Z``/offsets or none (UTC); NaT if not."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    return pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")


def _check_datetimes(
    values: pd.Series, column: str, offset: int, failures: dict[tuple[str, str], dict[str, Any]], max_rows: int
) -> None:
    bad = (parse_datetimes(values).isna() & values.notna()).to_numpy()
    if not bad.any():
        return
    entry = failures.setdefault(
        (column, DATETIME_CHECK), {"column": column, "check": DATETIME_CHECK, "count": 0, "rows": []}
    )
    entry["count"] += int(bad.sum())
    room = max_rows - len(entry["rows"])
    entry["rows"] += [offset + int(i) for i in np.flatnonzero(bad)[: max(room, 0)]]


def _collect_failures(
    cases: pd.DataFrame, offset: int, failures: dict[tuple[str, str], dict[str, Any]], max_rows: int
) -> None:
    """Failure counts per (column, check) with the first row numbers; never the failing values."""
    for record in cases.to_dict("records"):
        check = str(record.get("check"))
        # For a missing column the failure case is the column's name (never a data value).
        column = str(record.get("failure_case") if check == "column_in_dataframe" else record.get("column") or "")
        entry = failures.setdefault((column, check), {"column": column, "check": check, "count": 0, "rows": []})
        entry["count"] += 1
        index = record.get("index")
        if index is not None and not (isinstance(index, float) and math.isnan(index)) and len(entry["rows"]) < max_rows:
            entry["rows"].append(offset + int(index))
