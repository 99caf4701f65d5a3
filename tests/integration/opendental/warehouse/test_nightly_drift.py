"""nightly_etl checks tables.yml against the live source first and records drift in an artifact."""

from __future__ import annotations

from pathlib import Path

import yaml

from clinicflow.connectors.mysql.sessions import raw_connection
from clinicflow_dev import generator
from tests.support.artifacts import flow_run_artifacts


def test_nightly_records_a_new_source_column_as_drift(
    prefect_server, make_mysql_db, make_pg_db, monkeypatch, tmp_path: Path
) -> None:
    from flows.nightly import nightly_etl

    src, dst, pg = make_mysql_db("dsrc"), make_mysql_db("drepl"), make_pg_db("danalytics")
    generator.seed(src, edge_cases=False)
    for block, server in (("OPENDENTAL_SOURCE", src), ("OPENDENTAL_REPLICATION", dst), ("ANALYTICS_POSTGRES", pg)):
        monkeypatch.setenv(f"CLINICFLOW_{block}_DATABASE", server.database)
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_USER", pg.username)
    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    tables_file = tmp_path / "tables.yml"
    tables_file.write_text(
        yaml.safe_dump(
            {
                "tables": {
                    "definition": {
                        "primary_key": ["DefNum"],
                        "columns": [
                            "DefNum",
                            "Category",
                            "ItemOrder",
                            "ItemName",
                            "ItemValue",
                            "ItemColor",
                            "IsHidden",
                        ],
                    }
                }
            }
        )
    )
    conn = raw_connection(src)
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE definition ADD COLUMN ItemNote varchar(20) NOT NULL DEFAULT ''")
    conn.close()
    night = nightly_etl(tables_file=str(tables_file), skip_verification=True, return_state=True)
    artifact = flow_run_artifacts(night.state_details.flow_run_id)["nightly-schema-drift"]
    assert "definition" in str(artifact.data)
    assert "ItemNote" in str(artifact.data)
