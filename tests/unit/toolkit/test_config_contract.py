"""The configuration contract: one `{param}` rule in every string field, checked at load, documented from the models."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from clinicflow.cli import app
from clinicflow.toolkit.base import RunContext
from clinicflow.toolkit.compose import etl, run_leaf_plain
from clinicflow.toolkit.discovery import discover
from clinicflow.toolkit.reference import BEGIN, END, SECTIONS, reference, takes_parameters
from clinicflow.toolkit.spec import PipelineSpec, unused_parameters
from clinicflow.toolkit.templates import config_placeholders, fill, resolved

DOCS = Path(__file__).resolve().parents[3] / "docs" / "pipelines.md"

# A valid instance of each config, so one field at a time can hold a placeholder.
BASE: dict[str, dict[str, Any]] = {
    "HttpExtractorConfig": {"url": "http://x"},
    "FileExtractorConfig": {"path": "a.csv"},
    "SqlExtractorConfig": {"dialect": "postgres", "connection": "c", "query": "SELECT 1"},
    "ClickHouseExtractorConfig": {"query": "SELECT 1"},
    "TypeConversionConfig": {"mapping": {"a": "int"}},
    "ColumnsConfig": {},
    "LambdaConfig": {"function": "json:dumps"},
    "PostgresLoaderConfig": {"connection": "c", "table": "t"},
    "ClickHouseLoaderConfig": {"table": "t"},
    "FileLoaderConfig": {"path": "out.csv"},
    "ConsoleLoaderConfig": {},
    "DeadLetterConfig": {},
    "BucketRef": {"kind": "local", "block": "b"},
    "ClickHouseConnection": {"url": "chdb:///tmp/x"},
}


def templated(annotation: Any) -> Any:
    """A value of the field's type holding the placeholder ``{p}``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is str:
        return "pre-{p}-post"
    if origin in (typing.Union, __import__("types").UnionType, typing.Annotated):
        return templated(next(a for a in args if takes_parameters(a)))
    if origin is list:
        return ["pre-{p}-post"]
    if origin is dict:
        return {"k": "pre-{p}-post"}
    raise AssertionError(annotation)


def string_fields() -> list[tuple[str, str]]:
    return [
        (model.__name__, name)
        for _, model in SECTIONS
        for name, field in model.model_fields.items()
        if takes_parameters(field.annotation) and model.__name__ in BASE
    ]


@pytest.mark.parametrize(("model_name", "field_name"), string_fields())
def test_every_string_field_takes_a_parameter(model_name: str, field_name: str) -> None:
    model: type[BaseModel] = next(m for _, m in SECTIONS if m.__name__ == model_name)
    field = model.model_fields[field_name]
    config = model.model_validate({**BASE[model_name], (field.alias or field_name): templated(field.annotation)})
    found = config_placeholders(config)
    assert found, found
    assert all(names == {"p"} for names in found.values()), found
    filled = resolved(config, {"p": "X"})
    assert "pre-X-post" in repr(getattr(filled, field_name))
    assert "{p}" not in repr(getattr(filled, field_name))


def test_the_rule_braces_environment_and_clickhouse_parameters() -> None:
    assert (
        fill('s3://{bucket}/{{literal}}/${TOKEN}/{id:UInt32}/{"a": 1}', {"bucket": "b"}, "x")
        == 's3://b/{literal}/${TOKEN}/{id:UInt32}/{"a": 1}'
    )
    from clinicflow.toolkit.base import ToolkitError

    with pytest.raises(ToolkitError, match="names parameter 'nope'"):
        fill("{nope}", {}, "path")


def test_nested_configs_are_filled() -> None:
    from clinicflow.toolkit.configs import HttpExtractorConfig, TypeConversionConfig

    http = HttpExtractorConfig.model_validate(
        {"url": "{base}/items", "pagination": {"style": "page", "page_param": "{pp}"}}
    )
    assert resolved(http, {"base": "http://h", "pp": "pg"}).pagination.page_param == "pg"
    types = TypeConversionConfig.model_validate(
        {"mapping": {"a": "int"}, "strict": False, "dead_letters": {"path": "{root}/dl"}}
    )
    assert resolved(types, {"root": "/r"}).dead_letters.path == "/r/dl"


def test_file_extract_and_load_paths_both_take_parameters(tmp_path: Path) -> None:
    (tmp_path / "in-north.csv").write_text("id,name\n1,a\n2,b\n")
    spec = PipelineSpec(
        name="copy",
        parameters={"src": str(tmp_path / "in-{{x}}"), "clinic": "north"},
        steps=[
            etl(
                "copy",
                extract={"kind": "file", "path": str(tmp_path / "in-{clinic}.csv")},
                load={"kind": "file", "path": str(tmp_path / "out-{clinic}.jsonl")},
            )
        ],
    )
    ctx = RunContext(pipeline="copy", parameters=dict(spec.parameters))
    outcome = run_leaf_plain(spec.steps.steps[0], ctx)
    assert outcome.status == "completed", outcome.error
    assert (tmp_path / "out-north.jsonl").read_text().count("\n") == 2
    assert unused_parameters(spec) == ["src"]


def test_unknown_placeholder_fails_discovery_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad_pipeline.py").write_text(
        "from clinicflow.toolkit.compose import etl\n"
        "from clinicflow.toolkit.spec import PipelineSpec\n"
        "\n"
        "pipeline = PipelineSpec(name='bad', parameters={'src': 'a.csv'}, steps=[\n"
        "    etl('copy', extract={'kind': 'file', 'path': '{src}'}, load={'kind': 'file', 'path': '{dst}'})])\n"
    )
    (tmp_path / "unused_pipeline.py").write_text(
        "from clinicflow.toolkit.compose import etl\n"
        "from clinicflow.toolkit.spec import PipelineSpec\n"
        "pipeline = PipelineSpec(name='unused', parameters={'src': 'a.csv', 'spare': 1}, steps=[\n"
        "    etl('copy', extract={'kind': 'file', 'path': '{src}'}, load={'kind': 'console'})])\n"
    )
    found = discover(tmp_path, entry_points=False)
    (error,) = found.errors
    assert error.origin.endswith("bad_pipeline.py")
    assert "step copy load.path: placeholder(s) {dst} name no parameter" in error.message
    assert "(line 4 of bad_pipeline.py)" in error.message
    shown = CliRunner().invoke(app, ["pipelines", "show", "unused", "--folder", str(tmp_path)])
    assert "parameters ['spare'] are declared but no step's config uses them" in shown.output
    assert 'copy extract: {"kind": "file", "path": "a.csv"}' in shown.output


def test_docs_hold_the_generated_reference() -> None:
    text = DOCS.read_text()
    documented = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert documented == reference().strip(), "docs/pipelines.md is stale: paste `clinicflow pipelines schema`"
    out = CliRunner().invoke(app, ["pipelines", "schema", "load.file"])
    assert out.exit_code == 0
    assert "### load `file`" in out.output
    assert "### extract" not in out.output
    assert CliRunner().invoke(app, ["pipelines", "schema", "nope"]).exit_code == 2


def test_backfill_without_a_timescope_says_what_to_do() -> None:
    import asyncio
    from datetime import UTC, datetime

    from clinicflow.toolkit.base import ToolkitError
    from clinicflow.toolkit.compose import step
    from flows.pipeline_registry import backfill

    spec = PipelineSpec(name="plain", steps=[step("s", lambda ctx: 1)])
    with pytest.raises(ToolkitError, match=r"no windows to backfill: give its spec timescope=Timescope\(window="):
        asyncio.run(backfill(spec, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)))
