"""@options_parameters: a flow's parameters generated from its options models, as Prefect reads them."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import pytest
from prefect import flow
from prefect.utilities.callables import parameter_schema
from pydantic import Field

from clinicflow.core.options import FanOutOptions, OptionsError, RunOptions
from flows.options_params import options_parameters, source_version


class Toy(RunOptions):
    options_name: ClassVar[str] = "toy options"

    size: int = Field(3, ge=1)
    block: str = Field(min_length=1)
    roots: tuple[str, ...] | None = None


@flow(name="toy-options", version=source_version(__file__))
@options_parameters(block="toy-block")
def toy(pattern: str, options: Toy, fan_out: FanOutOptions) -> dict[str, Any]:
    """A toy flow.

    Args:
        pattern: what to read.
    """
    return {"pattern": pattern, "options": options, "fan_out": fan_out}


def test_the_signature_is_the_plain_parameters_then_each_models_fields() -> None:
    parameters = inspect.signature(toy.fn).parameters
    assert list(parameters) == ["pattern", "size", "block", "roots", "mode", "fanout_width", "run_key"]
    assert parameters["pattern"].default is inspect.Parameter.empty
    assert (parameters["size"].default, parameters["block"].default, parameters["mode"].default) == (
        3,
        "toy-block",
        "in-pod",
    )
    assert parameters["size"].annotation is int
    assert (toy.fn.__doc__ or "").startswith("A toy flow.")
    assert toy.fn.__name__ == "toy"


def test_prefects_parameter_schema_lists_the_fields_with_their_defaults() -> None:
    schema = parameter_schema(toy)
    assert schema.required == ["pattern"]
    assert list(schema.properties) == ["pattern", "size", "block", "roots", "mode", "fanout_width", "run_key"]
    assert schema.properties["size"] == {"default": 3, "position": 1, "title": "size", "type": "integer"}
    assert schema.properties["mode"]["enum"] == ["in-pod", "fanout"]
    assert schema.properties["pattern"]["description"] == "what to read."  # the docstring is kept
    assert toy.version == source_version(__file__)


def test_a_deployment_built_from_the_flow_has_the_same_schema_and_version() -> None:
    from flows.dicom_reports import extract_dicom_reports

    for built in (toy, extract_dicom_reports):
        deployment = built.to_deployment(name="schema-check")
        assert deployment._parameter_openapi_schema == parameter_schema(built)
        assert deployment.version == built.version
    assert "options" not in parameter_schema(extract_dicom_reports).properties


def test_a_call_gives_the_body_the_validated_models() -> None:
    result = toy.fn("s3://b/*", size="5", roots=["/a"], mode="fanout", run_key="night-1")
    assert result["pattern"] == "s3://b/*"
    assert result["options"] == Toy(size=5, block="toy-block", roots=("/a",))
    assert result["fan_out"] == FanOutOptions(mode="fanout", run_key="night-1")


def test_prefects_validation_then_the_call_accepts_parameters_by_name() -> None:
    validated = toy.validate_parameters({"pattern": "x", "size": "7", "fanout_width": 2})
    assert toy.fn(**validated)["options"].size == 7


def test_a_bad_value_names_every_bad_field_of_the_first_bad_model() -> None:
    with pytest.raises(OptionsError) as caught:
        toy.fn("x", size=0, block="", fanout_width=0)
    assert set(caught.value.problems) == {"size", "block"}
    with pytest.raises(OptionsError, match="fanout_width must be at least 1"):
        toy.fn("x", fanout_width=0)
    with pytest.raises(TypeError):
        toy.fn("x", surprise=1)


def test_a_field_declared_twice_or_a_default_for_no_field_is_refused_at_import() -> None:
    def twice(options: Toy, more: Toy) -> None: ...

    with pytest.raises(TypeError, match="declared twice"):
        options_parameters(block="b")(twice)

    def once(options: Toy) -> None: ...

    with pytest.raises(TypeError, match="defaults for no option"):
        options_parameters(block="b", nothing=1)(once)


def test_a_required_field_without_default_stays_required() -> None:
    def body(options: Toy) -> Toy:
        return options

    generated = options_parameters()(body)
    assert inspect.signature(generated).parameters["block"].default is inspect.Parameter.empty
    assert generated(block="b").block == "b"


def test_a_fixed_field_is_no_parameter_and_always_gets_its_value() -> None:
    def body(options: Toy) -> Toy:
        return options

    generated = options_parameters(fixed={"block": "always"})(body)
    assert "block" not in inspect.signature(generated).parameters
    assert generated(size=2) == Toy(size=2, block="always")
    with pytest.raises(TypeError):
        generated(block="other")
    with pytest.raises(TypeError, match="defaults for no option"):
        options_parameters(fixed={"nothing": 1})(body)
