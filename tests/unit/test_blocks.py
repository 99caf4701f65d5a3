"""Blocks and the one resolver: env mode, saved blocks, and no password anywhere."""

from __future__ import annotations

import pytest

from blocks.databases import MySQLServer, PostgresServer
from blocks.resolve import BlockResolutionError, env_prefix, resolve_block

SECRET = "fake-sentinel-not-a-credential-1"


def test_env_prefix_is_the_block_name_in_capitals() -> None:
    assert env_prefix("opendental-source") == "CLINICFLOW_OPENDENTAL_SOURCE_"
    assert env_prefix("dicom_bucket") == "CLINICFLOW_DICOM_BUCKET_"


def test_env_mode_builds_block_from_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_HOST", "db.example")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PORT", "3307")
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PASSWORD", SECRET)
    block = resolve_block("opendental-source", MySQLServer)
    assert (block.host, block.port, block.database) == ("db.example", 3307, "opendental")
    assert block.password.get_secret_value() == SECRET
    assert SECRET not in repr(block)
    assert SECRET not in str(block)
    assert SECRET not in block.describe()


def test_env_mode_defaults_per_block_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    for var in ("HOST", "PORT", "USER", "PASSWORD", "DATABASE"):
        monkeypatch.delenv(f"CLINICFLOW_OPENDENTAL_REPLICATION_{var}", raising=False)
        monkeypatch.delenv(f"CLINICFLOW_ANALYTICS_POSTGRES_{var}", raising=False)
    assert resolve_block("opendental-replication", MySQLServer).database == "opendental_replication"
    assert resolve_block("analytics-postgres", PostgresServer).database == "analytics"


def test_an_unknown_block_name_never_falls_back_to_a_local_default_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline's `connection: analytics-pg` (a typo) connected to the local `analytics` database."""
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.delenv("CLINICFLOW_ANALYTICS_PG_DATABASE", raising=False)
    with pytest.raises(BlockResolutionError, match=r"'analytics-pg'.*CLINICFLOW_ANALYTICS_PG_DATABASE"):
        resolve_block("analytics-pg", PostgresServer)
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_PG_DATABASE", "warehouse")
    assert resolve_block("analytics-pg", PostgresServer).database == "warehouse"


def test_bad_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_PORT", "five")
    with pytest.raises(BlockResolutionError, match="CLINICFLOW_ANALYTICS_POSTGRES_PORT"):
        resolve_block("analytics-postgres", PostgresServer)
