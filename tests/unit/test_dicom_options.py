"""DicomRunOptions: every bad DICOM run option is refused before any work, with its field named."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from clinicflow.dicom.options import DicomOptionsError, DicomRunOptions

BLOCKS = {"reports_block": "dicom-reports-postgres", "bucket_block": "dicom-reports-bucket"}


def options(**values: Any) -> DicomRunOptions:
    return DicomRunOptions.from_values(**{**BLOCKS, **values})


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("batch_size", 0, "batch_size must be at least 1 (got 0)"),
        ("page_size", -5, "page_size must be at least 1 (got -5)"),
        ("max_concurrency", 0, "max_concurrency must be at least 1"),
        ("failure_threshold", -1, "failure_threshold must be at least 0"),
        ("jpeg_quality", 0, "jpeg_quality must be at least 1"),
        ("jpeg_quality", 101, "jpeg_quality must be at most 100 (got 101)"),
        ("max_file_mb", 0, "max_file_mb must be greater than 0"),
        ("max_file_mb", float("inf"), "max_file_mb must be a finite number"),
        ("download_timeout_seconds", -1.0, "download_timeout_seconds must be greater than 0"),
        ("download_retries", -1, "download_retries must be at least 0"),
        ("retry_backoff_seconds", -0.5, "retry_backoff_seconds must be at least 0"),
        ("bucket_kind", "azure", "bucket_kind must be 'local', 'gcs' or 's3' (got 'azure')"),
        ("dataset", "../escape", "dataset must be 1-100 letters, digits"),
        ("dataset", "x" * 101, "dataset must be 1-100 letters"),
        ("query", "", "query must not be empty"),
        ("reports_block", "", "reports_block must not be empty"),
        ("page_size", "many", "page_size is invalid"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(field: str, value: Any, says: str) -> None:
    with pytest.raises(DicomOptionsError) as caught:
        options(**{field: value})
    assert list(caught.value.problems) == [field]
    assert says in str(caught.value)
    assert "validation error" not in str(caught.value)  # our sentence, not pydantic's dump


def test_every_bad_field_is_named_at_once_and_the_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1") as caught:
        options(batch_size=0, page_size=0, jpeg_quality=200, surprise=1)
    assert isinstance(caught.value, DicomOptionsError)
    assert set(caught.value.problems) == {"batch_size", "page_size", "jpeg_quality", "surprise"}
    assert caught.value.problems["surprise"] == "is not a DICOM run option"


def test_block_names_are_required() -> None:
    with pytest.raises(DicomOptionsError) as caught:
        DicomRunOptions.from_values()
    assert caught.value.problems == {"reports_block": "is required", "bucket_block": "is required"}


def test_a_long_bad_input_is_shortened_in_the_message() -> None:
    with pytest.raises(DicomOptionsError) as caught:
        options(dataset="a/" + "b" * 500)
    assert len(str(caught.value)) < 250


def test_edge_values_are_accepted_and_converted_for_the_flow() -> None:
    accepted = options(
        jpeg_quality=1,
        failure_threshold=0,
        download_retries=0,
        retry_backoff_seconds=0,
        batch_size=1,
        page_size=1,
        dataset="a",
        allowed_roots=None,
    )
    assert accepted.allowed_roots == ()
    assert accepted.flow_parameters()["allowed_roots"] is None
    assert options(jpeg_quality=100, allowed_roots=["/data"]).flow_parameters()["allowed_roots"] == ["/data"]


def test_download_limits_come_from_the_options() -> None:
    limits = options(
        max_file_mb=1.5,
        download_timeout_seconds=7,
        download_retries=2,
        retry_backoff_seconds=0.25,
        allowed_roots=["/a", "/b"],
        allow_private_redirects=True,
    ).download_limits()
    assert limits.max_bytes == int(1.5 * 1024 * 1024)
    assert (limits.timeout_seconds, limits.retry.retries, limits.retry.base_seconds) == (7, 2, 0.25)
    assert limits.allowed_roots == ("/a", "/b")
    assert limits.allow_private_redirects


def test_the_flows_parameters_are_the_models_fields() -> None:
    from flows.dicom_reports import extract_dicom_reports

    parameters = inspect.signature(extract_dicom_reports.fn).parameters
    assert list(parameters) == DicomRunOptions.parameter_names()
    assert list(parameters)[-4:] == ["partitions", "mode", "fanout_width", "run_key"]  # fan-out last
    flow_defaults = {name: p.default for name, p in parameters.items()}
    model_defaults = {**options().flow_parameters()}
    assert flow_defaults == model_defaults
    assert {name: p.annotation for name, p in parameters.items()} == {
        name: field.annotation for name, field in DicomRunOptions.model_fields.items()
    }


def test_the_clis_options_are_the_models_fields_but_the_run_key() -> None:
    import typer.main

    from clinicflow.cli import app

    run: Any = typer.main.get_command(app).commands["dicom"].commands["run"]  # type: ignore[attr-defined]
    flags = {p.name: p for p in run.params if p.name != "help"}
    expected = [name for name in DicomRunOptions.parameter_names() if name != "run_key"]
    assert list(flags) == [name if name != "allowed_roots" else "allowed_root" for name in expected]
    model_defaults = options().flow_parameters()
    for name, flag in flags.items():
        assert flag.default == model_defaults[name if name != "allowed_root" else "allowed_roots"], name
    assert flags["all_frames"].opts == ["--all-frames"]  # a flag, as before
    assert flags["allowed_root"].multiple


def test_the_flow_refuses_a_bad_value_before_resolving_any_block() -> None:
    from flows.dicom_reports import extract_dicom_reports

    # An unknown block would fail resolution: the options error comes first, so nothing was touched.
    with pytest.raises(DicomOptionsError, match="batch_size must be at least 1"):
        extract_dicom_reports.fn(batch_size=0, reports_block="no-such-block-anywhere", bucket_block="no-such-bucket")


def test_the_cli_refuses_a_bad_value_before_starting_the_flow() -> None:
    from typer.testing import CliRunner

    from clinicflow.cli import app

    result = CliRunner().invoke(
        app, ["dicom", "run", "--batch-size", "0", "--reports-block", "no-such-block"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2  # a usage error naming the option, before any server or flow run
    assert "Invalid value for --batch-size" in " ".join(result.output.replace("│", " ").split())
    bad_kind = CliRunner().invoke(app, ["dicom", "run", "--bucket-kind", "azure"])
    assert bad_kind.exit_code == 2
    assert "Invalid value for --bucket-kind: Input should be 'local', 'gcs' or 's3'" in " ".join(
        bad_kind.output.replace("│", " ").split()
    )
