"""A pipeline's spec: name, schedules (cron or interval, with a time zone), time scope, parameters, steps.

Everything is validated when the spec is built (a module that builds a bad
spec fails to import, and discovery reports it by module name).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from clinicflow.toolkit.base import ToolkitError
from clinicflow.toolkit.compose import Conditional, Leaf, Parallel, Sequential, Step, check_step_names, leaves
from clinicflow.toolkit.configs import LambdaConfig
from clinicflow.toolkit.templates import config_placeholders

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_CRON_NAMES = [{}, {}, {}, {m: i + 1 for i, m in enumerate(_MONTHS)}, {d: i for i, d in enumerate(_DAYS)}]


def validate_cron(expression: str) -> str:
    """A standard 5-field cron expression (or an @alias); raises ValueError naming the bad field."""
    text = expression.strip()
    if text.lower() in _CRON_ALIASES:
        return text
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expression!r} must have 5 fields (minute hour day month weekday), has {len(fields)}")
    labels = ("minute", "hour", "day", "month", "weekday")
    for field_text, (low, high), names, label in zip(fields, _CRON_RANGES, _CRON_NAMES, labels, strict=False):
        for item in field_text.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise ValueError(f"cron {expression!r}: bad step in {label} field {field_text!r}")
            if base == "*":
                continue
            for bound in base.split("-", 1):
                value = (
                    names.get(bound.lower()) if bound.lower() in names else (int(bound) if bound.isdigit() else None)
                )
                if value is None or not low <= value <= high:
                    raise ValueError(f"cron {expression!r}: {label} field {field_text!r} is outside {low}-{high}")
    return text


def _validate_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


class CronSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cron: str
    timezone: str = "UTC"
    active: bool = True

    _cron = field_validator("cron")(classmethod(lambda cls, v: validate_cron(v)))
    _tz = field_validator("timezone")(classmethod(lambda cls, v: _validate_timezone(v)))


class IntervalSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval: timedelta = Field(description="Time between runs, at least one minute.")
    timezone: str = "UTC"
    anchor: datetime | None = None
    active: bool = True

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _validate_timezone(v)))

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError(f"interval {value} is shorter than one minute")
        return value


def _schedule_kind(value: Any) -> str:
    has_cron = "cron" in value if isinstance(value, dict) else isinstance(value, CronSchedule)
    return "cron" if has_cron else "interval"


# One kind per schedule, told by its fields, so a bad cron gets one clear error.
Schedule = Annotated[
    Annotated[CronSchedule, Tag("cron")] | Annotated[IntervalSchedule, Tag("interval")], Discriminator(_schedule_kind)
]


class Timescope(BaseModel):
    """Time-partitioned runs: the run covers ``[start, end)``.

    Unset, it is the ``window`` ending at the run's start time.

    ``backfill --from A --to B`` runs one window after another over ``[A, B)``.
    """

    model_config = ConfigDict(extra="forbid")
    window: timedelta = timedelta(days=1)
    align_to_window: bool = Field(True, description="Whole windows: a daily window ends at midnight UTC.")

    def default_range(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        given = (now or datetime.now(UTC)).astimezone(UTC)
        # A plain datetime: a subclass (Prefect's pendulum DateTime) subtracts to its own interval type.
        moment = datetime.fromtimestamp(given.timestamp(), UTC).replace(microsecond=given.microsecond)
        if self.align_to_window:
            epoch = datetime(1970, 1, 1, tzinfo=UTC)
            moment = epoch + ((moment - epoch) // self.window) * self.window
        return moment - self.window, moment

    def windows(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        if end <= start:
            raise ValueError(f"backfill range is empty: {start.isoformat()} >= {end.isoformat()}")
        out, cursor = [], start
        while cursor < end:
            out.append((cursor, min(cursor + self.window, end)))
            cursor += self.window
        return out


_SQL_PARAMETER = re.compile(r"%\(([A-Za-z_][A-Za-z0-9_]*)\)s")


def parameter_references(steps: Step) -> dict[str, set[str]]:
    """``{"step role.field": parameter names}`` of every ``{param}`` in the steps' tool configs."""
    out: dict[str, set[str]] = {}
    for leaf in leaves(steps):
        for role, config in leaf.configs:
            for where, names in config_placeholders(config).items():
                out[f"{leaf.name} {role}.{where}"] = names
    return out


def unused_parameters(spec: PipelineSpec) -> list[str]:
    """Declared parameters no config refers to (as ``{name}`` or a query's ``%(name)s``).

    Empty when a step is code (a function step, a lambda, a tool object) that may read ``ctx.parameters``.
    """
    used: set[str] = set()
    for leaf in leaves(spec.steps):
        if not leaf.configs or any(
            not isinstance(c, BaseModel) or isinstance(c, LambdaConfig) for _, c in leaf.configs
        ):
            return []
        for _, config in leaf.configs:
            used |= {n for names in config_placeholders(config).values() for n in names}
            used |= set(_SQL_PARAMETER.findall(str(getattr(config, "query", "") or "")))
    return sorted(set(spec.parameters) - used)


class PipelineSpec(BaseModel):
    """What a ``*_pipeline.py`` module exposes as ``pipeline``."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)
    name: str = Field(description="Lower-case letters, digits, '-' and '_': the deployment name.")
    description: str = ""
    steps: Any = Field(description="A step tree built with etl/el/step/sequential/parallel/conditional/retry.")
    schedules: list[Schedule] = Field(default_factory=list)
    timescope: Timescope | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"pipeline name {value!r}: use lower-case letters, digits, '-' or '_' (at most 63)")
        return value

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: Any) -> Step:
        if isinstance(value, (list, tuple)):
            value = Sequential(tuple(value))
        if not isinstance(value, (Leaf, Sequential, Parallel, Conditional)):
            raise ValueError(
                f"steps must be built with the toolkit's etl/el/step/sequential/parallel/conditional, "
                f"not {type(value).__name__}"
            )
        try:
            check_step_names(value)
        except ToolkitError as exc:
            raise ValueError(str(exc)) from None
        return value

    def merged_parameters(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """The run's parameters: ``given`` over the defaults; a name the pipeline does not take is an error."""
        unknown = sorted(set(given or {}) - set(self.parameters))
        if unknown:
            raise ToolkitError(
                f"pipeline {self.name!r}: unknown parameters {unknown} (it takes {sorted(self.parameters) or 'none'})"
            )
        return {**self.parameters, **(given or {})}

    @model_validator(mode="after")
    def _reserved_parameters(self) -> PipelineSpec:
        clash = {"start", "end"} & set(self.parameters)
        if clash:
            raise ValueError(f"parameters {sorted(clash)} are reserved for the time scope")
        for where, names in parameter_references(self.steps).items():
            unknown = sorted(names - set(self.parameters))
            if unknown:
                raise ValueError(
                    f"step {where}: placeholder(s) {', '.join('{' + n + '}' for n in unknown)} "
                    f"name no parameter of the pipeline (declared: {sorted(self.parameters) or 'none'})"
                )
        return self
