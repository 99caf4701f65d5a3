"""@model_options: a command's options generated from options models (names, defaults, help, flags)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from clinicflow.cli.options_cli import model_options
from clinicflow.core.options import FanOutOptions, RunOptions


class Toy(RunOptions):
    options_name: ClassVar[str] = "toy options"

    size: int = Field(3, ge=1, description="How big.")
    kind: Literal["a", "b"] = "a"
    block: str = Field(min_length=1)
    roots: tuple[str, ...] | None = Field(None, description="A root (repeatable).")
    loud: bool = Field(False, description="Shout.")
    note: str | None = None


def toy_app(seen: dict[str, Any]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @model_options(
        Toy,
        FanOutOptions,
        defaults={"block": "toy-block"},
        exclude=frozenset({"run_key"}),
        names={"roots": "root", "note": "comment"},
        help={"mode": "in-pod | fanout (toy children)."},
    )
    def run(
        pattern: Annotated[str, typer.Argument(help="What to read.")],
        **values: Any,
    ) -> None:
        seen.update(values, pattern=pattern)

    return app


def test_options_come_from_the_fields_by_name_and_reach_the_command_by_field_name() -> None:
    seen: dict[str, Any] = {}
    result = CliRunner().invoke(
        toy_app(seen),
        ["x/*", "--size", "5", "--kind", "b", "--root", "/a", "--root", "/b", "--loud", "--comment", "hi"],
    )
    assert result.exit_code == 0, result.output
    assert seen == {
        "pattern": "x/*",
        "size": 5,
        "kind": "b",
        "block": "toy-block",
        "roots": ["/a", "/b"],
        "loud": True,
        "note": "hi",
        "mode": "in-pod",
        "fanout_width": 4,
    }


def test_bad_values_are_usage_errors_naming_every_option_before_the_command_runs() -> None:
    """The flow's own validation printed a parameter dump and exited 1, as if the run had failed."""
    seen: dict[str, Any] = {}
    result = CliRunner().invoke(toy_app(seen), ["x/*", "--kind", "c", "--size", "0"], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())
    assert (
        "Invalid value for --size: Input should be greater than or equal to 1; --kind: Input should be 'a' or 'b'"
        in (said)
    )
    assert seen == {}


def test_help_shows_descriptions_defaults_and_one_way_flags() -> None:
    result = CliRunner().invoke(toy_app({}), ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    for text in ("How big.", "[default: 3]", "a | b", "toy-block", "--root", "--loud", "toy children", "What to read"):
        assert text in result.output, text
    assert "--no-loud" not in result.output
    assert "--run-key" not in result.output
    assert "--roots" not in result.output


@pytest.mark.parametrize("argv", [["x", "--run-key", "k"], ["x", "--roots", "/a"]])
def test_an_excluded_or_renamed_field_is_no_option(argv: list[str]) -> None:
    assert CliRunner().invoke(toy_app({}), argv).exit_code == 2
