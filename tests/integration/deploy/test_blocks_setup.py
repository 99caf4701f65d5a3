"""`clinicflow blocks setup` against a real (test) Prefect API: create, no-op, update; errors hold no secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blocks.databases import MySQLServer, PostgresServer
from blocks.setup import DEPLOYMENT_BLOCKS, BlockSetupError, blocks_from_mapping, setup_blocks
from clinicflow.cli import app

# The well-known block names are shared on the session's Prefect API: one worker at a time uses them.
pytestmark = pytest.mark.xdist_group("prefect-blocks")

SECRET = "fake-sentinel-not-a-credential-2"
FIELDS = ("HOST", "PORT", "USER", "PASSWORD", "DATABASE")


def _prefix(name: str) -> str:
    return "CLINICFLOW_" + name.upper().replace("-", "_") + "_"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if any(key.startswith(_prefix(name)) for name in DEPLOYMENT_BLOCKS):
            monkeypatch.delenv(key)
    monkeypatch.setenv("COLUMNS", "200")  # rich tables on one line per block
    return monkeypatch


@pytest.fixture
def deployment_blocks_removed(prefect_server: None) -> Iterator[None]:
    """The well-known blocks are deleted before and after, so the shared test API stays clean."""
    from prefect.client.orchestration import get_client

    def remove() -> None:
        with get_client(sync_client=True) as client:
            for name, block_type in DEPLOYMENT_BLOCKS.items():
                try:
                    document = client.read_block_document_by_name(name, block_type.get_block_type_slug())
                except Exception:  # noqa: BLE001 - absent is what we want
                    continue
                client.delete_block_document(document.id)

    remove()
    yield
    remove()


def set_block_env(monkeypatch: pytest.MonkeyPatch, name: str, **values: str) -> None:
    for field, value in values.items():
        monkeypatch.setenv(_prefix(name) + field.upper(), value)


def test_from_env_creates_then_leaves_unchanged_then_updates(
    clean_env: pytest.MonkeyPatch, deployment_blocks_removed: None
) -> None:
    set_block_env(
        clean_env,
        "opendental-source",
        host="od.clinic.example",
        port="3307",
        user="reader",
        password=SECRET,
        database="opendental",
    )
    set_block_env(clean_env, "opendental-replication", host="replica.example", password=SECRET)
    set_block_env(clean_env, "analytics-postgres", host="pg.example", user="loader", password=SECRET)
    runner = CliRunner()

    first = runner.invoke(app, ["blocks", "setup", "--from-env"])
    assert first.exit_code == 0, first.output
    assert SECRET not in first.output
    assert first.output.count("created") == 3
    source = MySQLServer.load("opendental-source")
    assert (source.host, source.port, source.username, source.database) == (
        "od.clinic.example",
        3307,
        "reader",
        "opendental",
    )
    assert source.password.get_secret_value() == SECRET
    assert MySQLServer.load("opendental-replication").database == "opendental_replication"  # resolver's default
    assert PostgresServer.load("analytics-postgres").username == "loader"

    second = runner.invoke(app, ["blocks", "setup", "--from-env"])
    assert second.exit_code == 0, second.output
    assert second.output.count("unchanged") == 3
    assert "created" not in second.output

    clean_env.setenv("CLINICFLOW_ANALYTICS_POSTGRES_PASSWORD", SECRET + "-rotated")
    outcomes = {o.name: o.action for o in setup_blocks(from_env=True, file=None) if o.action != "skipped"}
    assert outcomes == {
        "opendental-source": "unchanged",
        "opendental-replication": "unchanged",
        "analytics-postgres": "updated",
    }
    assert PostgresServer.load("analytics-postgres").password.get_secret_value() == SECRET + "-rotated"


def test_from_env_skips_blocks_without_variables_and_only_fails_when_asked_for_them(
    clean_env: pytest.MonkeyPatch, deployment_blocks_removed: None
) -> None:
    set_block_env(clean_env, "opendental-source", host="od.example")
    outcomes = {o.name: o for o in setup_blocks(from_env=True, file=None)}
    assert outcomes["opendental-source"].action == "created"
    assert outcomes["analytics-postgres"].action == "skipped"
    assert "CLINICFLOW_ANALYTICS_POSTGRES_*" in outcomes["analytics-postgres"].detail
    result = CliRunner().invoke(app, ["blocks", "setup", "--from-env", "--only", "analytics-postgres"])
    assert result.exit_code == 1
    assert "requested but not set up: analytics-postgres" in result.output


def test_from_file(tmp_path: Path, clean_env: pytest.MonkeyPatch, deployment_blocks_removed: None) -> None:
    config = tmp_path / "blocks.yml"
    config.write_text(
        f"""
blocks:
  opendental-source:
    host: od.example
    password: {SECRET}
  analytics-postgres:
    type: clinicflow-postgres-server
    host: pg.example
    database: dw
""",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["blocks", "setup", "--file", str(config)])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert MySQLServer.load("opendental-source").password.get_secret_value() == SECRET
    assert PostgresServer.load("analytics-postgres").database == "dw"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"blocks": {"opendental-source": {"port": "not-a-port", "password": SECRET}}}, "'opendental-source': port"),
        ({"blocks": {"opendental-source": {"password": 12345}}}, "'opendental-source': password"),
        (
            {"blocks": {"analytics-postgres": {"type": "clinicflow-mysql-server"}}},
            "must be of type 'clinicflow-postgres",
        ),
        ({"blocks": {"my-extra": {"host": "x"}}}, "'my-extra' needs a 'type'"),
        ({"blocks": {"opendental-source": {"type": "nope"}}}, "unknown type 'nope'"),
        ({"tables": {}}, "expected a mapping with a 'blocks' mapping"),
        # A mistyped field was dropped and the block saved on its default database.
        (
            {"blocks": {"trypipe-pg": {"type": "clinicflow-postgres-server", "databse": "try", "password": SECRET}}},
            "'trypipe-pg' (clinicflow-postgres-server) has no field(s) 'databse'",
        ),
        (
            {"blocks": {"trypipe-pg": {"type": "clinicflow-postgres-server", "fields": {"database": "try"}}}},
            "has no field(s) 'fields'",
        ),
    ],
)
def test_bad_file_names_block_and_field_never_the_value(data: dict, message: str) -> None:
    with pytest.raises(BlockSetupError) as info:
        blocks_from_mapping(data, "blocks.yml")
    assert message in str(info.value)
    assert "blocks.yml" in str(info.value)
    assert SECRET not in str(info.value)
    assert "12345" not in str(info.value)


def test_setup_refuses_to_run_without_a_prefect_api(clean_env: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    set_block_env(clean_env, "opendental-source", host="od.example", password=SECRET)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = CliRunner().invoke(app, ["blocks", "setup", "--from-env"])
    assert result.exit_code == 1
    assert "PREFECT_API_URL is not set" in result.output
    assert SECRET not in result.output


def test_register_registers_clinicflow_block_types(prefect_server: None) -> None:
    from prefect.client.orchestration import get_client

    result = CliRunner().invoke(app, ["blocks", "register"])
    assert result.exit_code == 0, result.output
    with get_client(sync_client=True) as client:
        for slug in ("clinicflow-mysql-server", "clinicflow-postgres-server", "clinicflow-openai-compatible-llm"):
            assert client.read_block_type_by_slug(slug).slug == slug


def test_gcs_bucket_block_from_env_is_idempotent(
    clean_env: pytest.MonkeyPatch, deployment_blocks_removed: None, tmp_path: Path
) -> None:
    """The DICOM bucket (GcsBucket + nested GcpCredentials): created, then unchanged, then updated."""
    from prefect_gcp.cloud_storage import GcsBucket

    from blocks.buckets import anonymous_adc_if_emulated

    # Against the emulator address, google.auth is anonymous (no Google credentials on this machine).
    clean_env.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    set_block_env(
        clean_env, "dicom-reports-bucket", bucket="clinic-reports", project="clinic-project", folder="exports"
    )
    first = {o.name: o for o in setup_blocks(from_env=True, file=None, names=["dicom-reports-bucket"])}
    assert first["dicom-reports-bucket"].action == "created"
    assert first["dicom-reports-bucket"].detail == "gs://clinic-reports/exports"
    with anonymous_adc_if_emulated():
        saved = GcsBucket.load("dicom-reports-bucket")
    assert (saved.bucket, saved.bucket_folder.rstrip("/"), saved.gcp_credentials.project) == (
        "clinic-reports",
        "exports",
        "clinic-project",
    )
    again = setup_blocks(from_env=True, file=None, names=["dicom-reports-bucket"])
    assert [o.action for o in again] == ["unchanged"]
    clean_env.setenv("CLINICFLOW_DICOM_REPORTS_BUCKET_PROJECT", "other-project")
    assert [o.action for o in setup_blocks(from_env=True, file=None, names=["dicom-reports-bucket"])] == ["updated"]
