"""Run options models (clinicflow.core.options): a bad value is refused before any work, naming its field; a
fanned-out run gives its options whole to the children, the fan-out fields apart."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from clinicflow.core.options import FanOutOptions, OptionsError, PartitionedFanOut
from clinicflow.ingest.options import IngestFanOut, IngestRunOptions


def ingest(**values: Any) -> IngestRunOptions:
    return IngestRunOptions.from_values(**{"database_block": "analytics", **values})


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("batch_size", 0, "batch_size must be at least 1 (got 0)"),
        ("max_file_mb", 0, "max_file_mb must be greater than 0"),
        ("fail_percentage", 101, "fail_percentage must be at most 100"),
        ("max_error_rate", 1.5, "max_error_rate must be at most 1"),
        ("extractor", "magic", "extractor must be 'rules', 'llm' or 'none' (got 'magic')"),
        ("ingest_schema", "a;drop", "ingest_schema invalid table name"),
        ("inline_binary_kb", -1, "inline_binary_kb must be at least 0"),
        ("database_block", "", "database_block must not be empty"),
    ],
)
def test_a_bad_ingest_option_is_refused_naming_its_field(field: str, value: Any, says: str) -> None:
    with pytest.raises(OptionsError) as caught:
        ingest(**{field: value})
    assert list(caught.value.problems) == [field]
    assert says in str(caught.value)
    assert str(caught.value).startswith("ingest options: ")
    assert isinstance(caught.value, ValueError)


def test_fan_out_fields_are_their_own_model() -> None:
    with pytest.raises(OptionsError, match="mode must be 'in-pod' or 'fanout'"):
        FanOutOptions.from_values(mode="sideways")
    with pytest.raises(OptionsError) as caught:
        IngestFanOut.from_values(partitions=0, fanout_width=0)
    assert set(caught.value.problems) == {"partitions", "fanout_width"}
    with pytest.raises(OptionsError, match="mode is not an ingest option"):
        ingest(mode="fanout")  # a child never gets the fan-out fields
    assert IngestFanOut.from_values(mode="fanout").fans_out
    assert set(PartitionedFanOut.model_fields) == {"mode", "fanout_width", "run_key", "partitions"}


def test_ingest_options_survive_the_trip_to_a_child_whole() -> None:
    options = ingest(batch_size=7, max_file_mb=0.5, extractor="none", llm_block="clinic-a-llm")
    assert IngestRunOptions.model_validate(options.model_dump(mode="json")) == options
    settings = options.settings("run-1")
    assert (settings.run_id, settings.max_file_bytes, settings.schema) == ("run-1", 512 * 1024, "ingest")


def test_ingest_flow_defaults_are_the_models() -> None:
    from flows.ingest_files import ingest_files

    params = inspect.signature(ingest_files.fn).parameters
    assert list(params) == ["pattern", *IngestRunOptions.parameter_names(), *IngestFanOut.parameter_names()]
    for name, field in {**IngestRunOptions.model_fields, **IngestFanOut.model_fields}.items():
        if field.is_required():
            continue
        assert params[name].default == field.default, name


def test_an_ingest_run_fails_on_its_error_rate_with_one_message() -> None:
    from collections import Counter

    from clinicflow.ingest.pipeline import RunCounts
    from clinicflow.ingest.verdicts import error_rate_failure

    fine = RunCounts(new=10, staged=10, dead_lettered=Counter({"extract/timeout": 1}))
    assert error_rate_failure(fine, 0.1) is None
    above = RunCounts(new=10, staged=10, dead_lettered=Counter({"extract/timeout": 2}))
    assert error_rate_failure(above, 0.1) == (
        "error rate 20.0% above max_error_rate 10.0% (2 dead letter(s) of 10 new item(s): extract/timeout=2); "
        "every readable document was staged (10): see `clinicflow dlq list`"
    )
    # A document found not clinical (an invoice, a fax cover) is set aside for review: no failure of the run.
    decoys = RunCounts(new=10, staged=10, dead_lettered=Counter({"extract/not-clinical": 3, "extract/timeout": 1}))
    assert (error_rate_failure(decoys, 0.1), decoys.as_dict()["dead_lettered"]) == (None, 4)
    decoys.dead_lettered["extract/missing-field"] += 1
    assert error_rate_failure(decoys, 0.1) == (
        "error rate 20.0% above max_error_rate 10.0% (2 dead letter(s) of 10 new item(s): extract/missing-field=1, "
        "extract/timeout=1, 3 not clinical set aside (not counted)); "
        "every readable document was staged (10): see `clinicflow dlq list`"
    )
    stopped = RunCounts(new=10, dead_lettered=Counter({"read/missing": 5}), stopped=True)
    assert "the batch that crossed it was not published" in (error_rate_failure(stopped, 0.5) or "")


@pytest.mark.parametrize("flow_name", ["nightly_etl", "load_tables"])
def test_nightly_flow_defaults_are_the_models(flow_name: str) -> None:
    import flows.nightly
    from clinicflow.opendental.options import NightlyFanOut, NightlyOptions

    params = inspect.signature(getattr(flows.nightly, flow_name).fn).parameters
    generated = [*NightlyOptions.parameter_names(), *NightlyFanOut.parameter_names()]
    if flow_name == "load_tables":  # no replication: no source block, no fan-out
        generated = [name for name in NightlyOptions.parameter_names() if name != "source_block"]
    assert list(params) == generated
    fields = {**NightlyOptions.model_fields, **NightlyFanOut.model_fields}
    checked = [name for name, field in fields.items() if name in params and not field.is_required()]
    assert {"full_refresh", "skip_verification", "full_sweep", "tables_file", "allow_empty"} <= set(checked)
    for name in checked:
        assert params[name].default == fields[name].default, name


def test_replay_and_reextract_options_refuse_bad_values_naming_each_field() -> None:
    from clinicflow.ingest.options import ReextractOptions, ReplayOptions

    with pytest.raises(OptionsError) as caught:
        ReplayOptions.from_values(database_block="db", max_file_mb=0, ingest_schema="no;schema", extractor="gpt")
    assert set(caught.value.problems) == {"max_file_mb", "ingest_schema", "extractor"}
    assert "dead-letter replay options" in str(caught.value)
    with pytest.raises(OptionsError) as caught:
        ReextractOptions.from_values(database_block="db", extractor="none", since="yesterday", batch_size=0)
    assert set(caught.value.problems) == {"extractor", "since", "batch_size"}
    assert "must be rules or llm" in caught.value.problems["extractor"]
    settings = ReplayOptions.from_values(database_block="db", max_file_mb=1, seed=3).settings("run-1")
    assert (settings.run_id, settings.max_file_bytes, settings.seed) == ("run-1", 1024 * 1024, 3)
    assert ReextractOptions.from_values(database_block="db", since="2026-01-02").since_time() is not None


@pytest.mark.parametrize(
    ("flow_name", "model_name"), [("replay_dead_letters", "ReplayOptions"), ("reextract_documents", "ReextractOptions")]
)
def test_replay_and_reextract_parameters_are_their_models_fields(flow_name: str, model_name: str) -> None:
    import clinicflow.ingest.options
    import flows.ingest_files
    from blocks.resolve import ANALYTICS_BLOCK

    model = getattr(clinicflow.ingest.options, model_name)
    parameters = inspect.signature(getattr(flows.ingest_files, flow_name).fn).parameters
    assert list(parameters) == model.parameter_names() == list(model.model_fields)
    for name, field in model.model_fields.items():
        assert parameters[name].default == (ANALYTICS_BLOCK if field.is_required() else field.default), name
    with pytest.raises(OptionsError, match="ingest_schema"):  # before any block is resolved
        getattr(flows.ingest_files, flow_name).fn(ingest_schema="x;y", database_block="no-such-block")


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        (("ingest", "run"), ["pattern", *IngestRunOptions.parameter_names(), *IngestFanOut.parameter_names()]),
        (("ingest", "reextract"), "ReextractOptions"),
        (("dlq", "replay"), "ReplayOptions"),  # ids: the command's own argument, first
    ],
)
def test_the_ingest_commands_options_are_the_models_fields(path: tuple[str, str], fields: Any) -> None:
    import typer.main

    import clinicflow.ingest.options
    from clinicflow.cli import app

    command: Any = typer.main.get_command(app).commands[path[0]].commands[path[1]]  # type: ignore[attr-defined]
    names = [p.name for p in command.params if p.name != "help"]
    if isinstance(fields, str):
        fields = getattr(clinicflow.ingest.options, fields).parameter_names()
    left_out = {"run_key", "inline_binary_kb"} | ({"seed", "max_file_mb"} if path == ("dlq", "replay") else set())
    assert names == [{"ingest_schema": "schema"}.get(name, name) for name in fields if name not in left_out]
    assert {p.name: p.default for p in command.params}["schema"] == "ingest"
