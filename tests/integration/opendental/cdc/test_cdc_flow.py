"""The ``cdc_opendental`` flow (what the ``cdc`` deployment runs) on the session's Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow_dev.binlog_server import cli_env
from tests.integration.opendental.cdc.cdc_support import assert_equal, create_source, mutate_day, write_tables_yml


def test_the_flow_catches_up_and_records_its_summary(
    prefect_server: None, make_binlog_db, make_mysql_db, make_pg_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from flows.cdc import cdc_opendental

    src, replica, pg = make_binlog_db("cdcflow"), make_mysql_db("cdcflow"), make_pg_db("cdcflow")
    tables_file, config = write_tables_yml(tmp_path)
    create_source(src)
    for key, value in cli_env(src, replica, pg, tables_file).items():
        if key.startswith("CLINICFLOW_"):
            monkeypatch.setenv(key, value)
    first = cdc_opendental(until_caught_up=True, server_id=5201)
    assert first["snapshot"] is True
    assert first["failed tables"] == ""
    mutate_day(src, 1)
    second = cdc_opendental(until_caught_up=True, server_id=5201)
    assert second["events"] > 0
    assert second["snapshot"] is False
    assert_equal(src, replica, pg, config)
