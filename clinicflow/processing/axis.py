"""A data file's x axis: which column is its time, and a column's values as float64 (epoch seconds for times).

Date/time types, ISO-8601 text, elapsed-time text (``[h:]m:ss[.fff]``) and Unix timestamps in a time-named column
become numbers the chart and the visible-range search can use; anything else is named in a ProcessingError.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from clinicflow.processing.base import ProcessingError
from clinicflow.processing.quality import parse_datetimes

TIME_NAMES = (
    "time", "timestamp", "datetime", "date time", "time stamp", "date", "ts", "t", "elapsed time", "elapsed",
    "unix time", "epoch",
    # German, French, Spanish, Dutch, Italian device and spreadsheet exports
    "zeit", "zeitstempel", "datum", "uhrzeit", "datum zeit", "horodatage", "heure", "temps", "date heure",
    "fecha", "hora", "tiempo", "fecha hora", "tijd", "tijdstempel", "datum tijd", "ora", "data ora", "tempo",
)  # fmt: skip
_UNIT_NOTE = re.compile(r"[(\[][^)\]]*[)\]]")  # "Time (s)", "Timestamp [ms]", "Date/Time (UTC)"


def is_time_name(name: str) -> bool:
    """A column named as a time: ``time``, ``Date/Time``, ``Timestamp (UTC)``, ``sample_time``, ``Time [ms]``..."""
    plain = re.sub(r"[^a-z0-9]+", " ", _UNIT_NOTE.sub(" ", name.lower())).strip()
    return plain in TIME_NAMES or plain.endswith((" time", " timestamp")) or plain.startswith("time")


def default_time_column(columns: list[dict[str, str]]) -> str | None:
    """The data file's time column: the first of a date/time type, else the first named like one; None: none."""
    for column in columns:
        dtype = column.get("dtype", "").lower()
        if "datetime" in dtype or "timestamp" in dtype:
            return column["name"]
    for column in columns:
        if is_time_name(column["name"]):
            return column["name"]
    return None


# Unix epoch counts by unit: (smallest count, counts per second). Each band spans 2001-09-09 to 2286-11-20 in its
# unit, so the bands never overlap and a count of seconds since a recording's start (far smaller) is never one.
_EPOCH_BANDS = ((1e9, 1.0), (1e12, 1e3), (1e15, 1e6), (1e18, 1e9))


def epoch_units_per_second(series: pd.Series, label: str) -> float | None:
    """Unix timestamps in a numeric column named as a time (a device's or an app's export): how many of its counts
    make a second (1, 1e3 for milliseconds, 1e6, 1e9); None when the column is not that (every value in one band)."""
    if not is_time_name(label) or not pd.api.types.is_numeric_dtype(series.dtype):
        return None
    if pd.api.types.is_bool_dtype(series.dtype):
        return None
    values = series.to_numpy(dtype=float, na_value=np.nan)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = float(values.min()), float(values.max())
    return next((per_second for bound, per_second in _EPOCH_BANDS if bound <= low and high < bound * 10), None)


_ELAPSED = r"^\s*(?:(\d+):)?(\d+):(\d{1,2}(?:\.\d+)?)\s*$"  # [h:]m:ss[.fff], as PhysioNet and monitors export


def elapsed_seconds(series: pd.Series) -> np.ndarray | None:
    """Elapsed-time text (``0:00.003``, ``1:02:03.5``) as seconds (h × 3600 + m × 60 + s); None: not that shape."""
    present = series.notna().to_numpy()
    if not present.any() or re.match(_ELAPSED, str(series.iloc[int(np.argmax(present))])) is None:
        return None  # decided by the first value: an ISO column is never run through the pattern row by row
    parts = series.astype("string").str.extract(_ELAPSED)
    if parts[2].isna().to_numpy()[present].any():
        return None
    hours, minutes, seconds = (pd.to_numeric(parts[i]).fillna(0).to_numpy(dtype=float) for i in range(3))
    out: np.ndarray = hours * 3600 + minutes * 60 + seconds
    out[~present] = np.nan
    return out


# A time with no zone (``2024-03-14 06:00``) is kept as the clock read it: "wall-time", drawn as written, never moved
# into the viewer's zone; one with a zone or an offset (``...Z``, ``...+01:00``, a zoned type, Unix time) is "time",
# an instant, drawn in UTC. Both are epoch seconds here (a wall time as if it were UTC).
WALL_TIME = "wall-time"
_ZONED = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)


# A European export's date-times ("14.03.2024 08:00", Excel in Germany): dotted dates are day first.
_DOTTED_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y")


def _dotted_day_first(series: pd.Series, iso: pd.Series) -> pd.Series:
    """``series`` read as dotted day-first date-times when one format reads every value; else ``iso`` as it was."""
    for fmt in _DOTTED_FORMATS:
        parsed = pd.to_datetime(series, format=fmt, errors="coerce")
        if not (parsed.isna() & series.notna()).any():
            return parsed.dt.tz_localize("UTC")  # a wall time, as a time without a zone is (see WALL_TIME)
    return iso


def as_axis(series: pd.Series, label: str, epoch_per_second: float | None = None) -> tuple[np.ndarray, str]:
    """(values as float64, kind): a date/time column in epoch seconds ("time", or "wall-time" when it has no zone:
    see :data:`WALL_TIME`), a numeric one as is ("numeric";
    "time" in epoch seconds when ``epoch_per_second`` says it counts Unix time, see :func:`epoch_units_per_second`),
    elapsed-time text in seconds ("numeric")."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        zone = "time" if getattr(series.dt, "tz", None) is not None else WALL_TIME
        stamps = pd.to_datetime(series, utc=True)
    elif pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        if epoch_per_second:
            return values / epoch_per_second, "time"
        return values, "numeric"
    else:
        elapsed = elapsed_seconds(series)
        if elapsed is not None:
            return elapsed, "numeric"
        stamps = parse_datetimes(series)
        first = series.dropna().head(1)
        zone = "time" if first.empty or _ZONED.search(str(first.iloc[0]).strip()) else WALL_TIME
        if (stamps.isna() & series.notna()).any():
            stamps = _dotted_day_first(series, stamps)
        if (stamps.isna() & series.notna()).any():
            unread = stamps.isna() & series.notna()
            for fmt in _DOTTED_FORMATS:  # the first value no reading takes, not the first ISO-8601 does not
                unread &= pd.to_datetime(series, format=fmt, errors="coerce").isna()
            bad = int(np.argmax(unread.to_numpy())) if unread.any() else int(np.argmax(stamps.isna().to_numpy()))
            raise ProcessingError(
                f"x axis: column {label!r} is neither numeric, elapsed time ([h:]m:ss) nor a date/time (ISO-8601, "
                f"or dotted day first: 14.03.2024 08:00) (first bad value at chunk row {bad})"
            )
    seconds = stamps.to_numpy(dtype="datetime64[ns]").astype("int64").astype(float) / 1e9
    seconds[stamps.isna().to_numpy()] = np.nan
    return seconds, zone
