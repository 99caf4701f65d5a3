"""Shared types of the processors: the data source, the errors, the parameter-model base."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from clinicflow.core.errors import ClinicflowError
from clinicflow.processing.datafiles import DEFAULT_CHUNK_ROWS, iter_chunks, iter_column

ProgressFn = Callable[[float], None]


class ProcessingError(ClinicflowError):
    """Processing cannot go on; the message names the column/parameter/script and is stored on the row."""


class InvalidRequest(ClinicflowError, ValueError):
    """A processing request does not fit the registry; ``field`` is the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class DataSource:
    """A local copy of a data file and what the files table knows about it."""

    path: Path
    name: str
    format: str
    row_count: int
    columns: list[str]

    def chunks(self, columns: list[str] | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
        return iter_chunks(self.path, self.format, columns=columns, chunk_rows=chunk_rows, name=self.name)

    def column_chunks(self, column: str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[np.ndarray | pd.Series]:
        return iter_column(self.path, self.format, column, chunk_rows=chunk_rows, name=self.name)


class ParamsModel(BaseModel):
    """Parameters of a processor: unknown fields are refused (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def json_number(value: object) -> float | int | None:
    """A float for JSON: NaN and infinities become null (JSON has neither)."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        return None
    return int(number) if isinstance(value, (int, np.integer)) else number
