"""The analyze_schema flow on a Prefect test server: writes tables.yml, fails on drift with an artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks.databases import MySQLServer
from clinicflow.opendental.tables.config import load_tables_config
from tests.support.artifacts import flow_run_artifacts

from .conftest import execute


def test_flow_writes_tables_yml_then_fails_on_drift(
    prefect_server: None, demo_source: MySQLServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.analyze_schema import analyze_schema

    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_HOST", demo_source.host)
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_PORT", str(demo_source.port))
    monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_USER", demo_source.username)
    path = tmp_path / "tables.yml"

    written = analyze_schema(
        output=str(path), database=demo_source.database, critical_tables=["securitylog"], return_state=True
    )
    assert written.is_completed()
    config = load_tables_config(path)
    assert config.effective("securitylog").tier == 1
    assert config.effective("patient").tier == 3
    assert "schema-analysis" in flow_run_artifacts(written.state_details.flow_run_id)

    clean = analyze_schema(output=str(path), database=demo_source.database, check=True, return_state=True)
    assert clean.is_completed()

    execute(demo_source, "DROP TABLE commlog")
    drift = analyze_schema(output=str(path), database=demo_source.database, check=True, return_state=True)
    assert drift.is_failed()
    assert "table_dropped" in drift.message
    artifact = flow_run_artifacts(drift.state_details.flow_run_id)["tables-yml-drift"]
    assert "commlog" in str(artifact.data)
