"""Pipeline spec validation: schedules (cron, interval, time zone), time scope windows, names, parameters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from rich.console import Console

from clinicflow.toolkit.base import Batch, RunContext
from clinicflow.toolkit.compose import step
from clinicflow.toolkit.console import ConsoleLoader
from clinicflow.toolkit.spec import PipelineSpec, Timescope

STEPS = [step("s", lambda ctx: None)]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "0 25 * * *"}, "hour field '25' is outside 0-23"),
        ({"cron": "*/0 * * * *"}, "bad step in minute field"),
        ({"cron": "0 1 * * funday"}, "weekday field 'funday'"),
        ({"cron": "0 1 * *"}, "must have 5 fields"),
        ({"cron": "0 1 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"interval": 30}, "shorter than one minute"),
        ({"cron": "0 1 * * *", "every": "day"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_schedules_are_rejected_with_the_reason(schedule: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PipelineSpec(name="p", steps=STEPS, schedules=[schedule])


def test_good_schedules() -> None:
    spec = PipelineSpec(
        name="p",
        steps=STEPS,
        schedules=[
            {"cron": "30 4 * * mon-fri", "timezone": "America/New_York"},
            {"cron": "@daily"},
            {"interval": 3600},
        ],
    )
    assert [type(s).__name__ for s in spec.schedules] == ["CronSchedule", "CronSchedule", "IntervalSchedule"]


def test_names_and_reserved_parameters() -> None:
    with pytest.raises(ValidationError, match="use lower-case letters"):
        PipelineSpec(name="Bad Name", steps=STEPS)
    with pytest.raises(ValidationError, match=r"parameters \['start'\] are reserved"):
        PipelineSpec(name="p", steps=STEPS, parameters={"start": 1})
    with pytest.raises(ValidationError, match="must be built with the toolkit"):
        PipelineSpec(name="p", steps="not steps")


def test_timescope_default_window_and_backfill_windows() -> None:
    scope = Timescope(window=timedelta(days=1))
    now = datetime(2026, 3, 5, 9, 30, tzinfo=UTC)
    assert scope.default_range(now) == (datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC))
    hourly = Timescope(window=timedelta(hours=6), align_to_window=False)
    assert hourly.default_range(now) == (now - timedelta(hours=6), now)
    windows = scope.windows(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, 12, tzinfo=UTC))
    assert [(a.day, b.day, b.hour) for a, b in windows] == [(1, 2, 0), (2, 3, 0), (3, 3, 12)]
    with pytest.raises(ValueError, match="backfill range is empty"):
        scope.windows(now, now)


def test_timescope_takes_prefects_pendulum_datetimes() -> None:
    import pendulum

    scheduled = pendulum.datetime(2026, 3, 5, 9, 30, tz="America/New_York")
    scope = Timescope(window=timedelta(days=1))
    start, end = scope.default_range(scheduled)
    assert (start, end) == (datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC))
    assert type(start) is datetime


def test_console_loader_shows_a_table_and_counts_every_row() -> None:
    console = Console(record=True, width=80)
    loader = ConsoleLoader(max_rows=2, title="preview", console=console, progress=False)
    batches = [Batch(("id", "name"), [(1, "a"), (2, None)]), Batch(("id", "name"), [(3, "c")])]
    assert loader.load(batches, RunContext()) == 3
    text = console.export_text()
    assert "preview" in text
    assert "│ 1  │ a    │" in text
    assert "│ 2  │      │" in text  # None shows empty
    assert "3 rows (1 not shown)" in text
    assert "│ 3" not in text
