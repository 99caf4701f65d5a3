"""Run options: one pydantic model per flow, validated before any work; a bad value names its field.

:class:`RunOptions` is the base of every flow's options model (DICOM, ingest, nightly): frozen, unknown
fields refused, no inf/nan. :meth:`RunOptions.from_values` turns pydantic's errors into one
:class:`OptionsError` with a sentence per bad field. :class:`FanOutOptions` holds the fields of a
fanned-out run (mode, width, run key), kept apart from what the children get.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicflow.core.errors import ClinicflowError

_SHOWN_INPUT_CHARS = 60

Mode = Literal["in-pod", "fanout"]


class OptionsError(ClinicflowError, ValueError):
    """Bad run options; ``problems`` maps each bad field to what is wrong with it."""

    def __init__(self, problems: dict[str, str], what: str = "run options") -> None:
        self.problems = problems
        super().__init__(f"{what}: " + "; ".join(f"{field} {text}" for field, text in problems.items()))


class RunOptions(BaseModel):
    """The base of a flow's options model; subclasses name themselves in ``options_name``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    options_name: ClassVar[str] = "run options"
    error_type: ClassVar[type[OptionsError]] = OptionsError

    @classmethod
    def parameter_names(cls) -> list[str]:
        """The fields in the order a flow or command lists them: the model's own first, then its bases' (fan-out)."""
        names: list[str] = []
        for klass in cls.__mro__:
            names += [name for name in vars(klass).get("__annotations__", {}) if name in cls.model_fields]
        return list(dict.fromkeys(names))

    @classmethod
    def from_values(cls, **values: Any) -> Self:
        """The options, or :attr:`error_type` naming every bad field (never pydantic's raw error)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise cls.error_type(option_problems(exc, cls.options_name), cls.options_name) from None


class FanOutOptions(RunOptions):
    """How a run is spread: in this pod, or as child runs (``fanout_width`` at a time) under ``run_key``."""

    options_name: ClassVar[str] = "fan-out options"

    mode: Mode = Field(
        "in-pod", description="in-pod | fanout (child runs on the work pool; needs PREFECT_API_URL, docs/scale-out.md)."
    )
    fanout_width: int = Field(4, ge=1, description="fanout: child runs started at a time.")
    run_key: str | None = Field(
        None,
        description="fanout: the run's key (default: the flow run's id); a rerun with it redoes only failed parts.",
    )

    @property
    def fans_out(self) -> bool:
        return self.mode == "fanout"


class PartitionedFanOut(FanOutOptions):
    """A fan-out that splits its work into about ``partitions`` parts (ingest prefixes, DICOM key ranges)."""

    partitions: int = Field(4, ge=1, description="fanout: about this many partitions.")


def option_problems(exc: ValidationError, options_name: str = "run options") -> dict[str, str]:
    """One sentence per bad field, from pydantic's errors (first error of a field wins)."""
    problems: dict[str, str] = {}
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"][:1]) or "options"
        if field not in problems:
            problems[field] = _sentence(error, options_name)
    return problems


def _sentence(error: Any, options_name: str) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    option = options_name.removesuffix("s")
    article = "an" if option[:1].lower() in "aeiou" else "a"
    texts = {  # one sentence per pydantic error type the fields can raise
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "greater_than": f"must be greater than {ctx.get('gt')}",
        "literal_error": f"must be {ctx.get('expected')}",
        "string_too_short": "must not be empty",
        "finite_number": "must be a finite number",
        "value_error": str(ctx.get("error")),
        "missing": "is required",
        "extra_forbidden": f"is not {article} {option}",
    }
    text = texts[kind] if kind in texts else f"is invalid: {error['msg']}"
    if kind in ("missing", "extra_forbidden"):
        return text
    shown = repr(error.get("input"))
    if len(shown) > _SHOWN_INPUT_CHARS:
        shown = shown[:_SHOWN_INPUT_CHARS] + "..."
    return f"{text} (got {shown})"
