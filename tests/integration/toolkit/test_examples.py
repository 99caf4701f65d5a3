"""The two shipped example pipelines, run as Prefect flows on real PostgreSQL and chDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks.databases import PostgresServer
from clinicflow.connectors.connections import connected
from clinicflow.toolkit.clickhouse import ClickHouseConnection
from clinicflow.toolkit.discovery import discover
from clinicflow_dev import demo_api
from tests.integration.toolkit.test_sqldb import pg_exec

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def analytics(make_pg_db: Callable[[str], PostgresServer], monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    db = make_pg_db("analytics")
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_DATABASE", db.database)
    return db


def test_examples_are_discovered_from_the_repository() -> None:
    found = discover(REPO / "pipelines", entry_points=False)
    assert not found.errors
    assert {"referral-providers", "procedures-daily"} <= set(found.pipelines)


def test_http_api_to_postgres_example(prefect_server: None, analytics: PostgresServer) -> None:
    from flows.pipeline import compile_flow

    spec = discover(REPO / "pipelines", entry_points=False).get("referral-providers")
    with demo_api.serve() as url:
        rows = compile_flow(spec)(parameters={"api_url": url})
        assert rows[0]["rows_written"] == 45
        compile_flow(spec)(parameters={"api_url": url})  # a second run upserts, no duplicates
    got = pg_exec(analytics, "SELECT count(*), count(DISTINCT npi), min(npi) FROM toolkit.referral_providers")
    assert got == [(45, 45, 1_000_007_919)]
    (row,) = pg_exec(
        analytics,
        "SELECT specialty, accepting_new, updated_at FROM toolkit.referral_providers WHERE name = 'Referral Clinic 4'",
    )
    assert row == ("Pediatric Dentistry", False, datetime(2026, 5, 14, 8, 0, tzinfo=UTC))


def test_postgres_raw_to_clickhouse_daily_example(
    prefect_server: None, analytics: PostgresServer, ch_database: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.pipeline import compile_flow

    url, database = ch_database
    monkeypatch.setenv("CLINICFLOW_CLICKHOUSE_URL", url)
    monkeypatch.setenv("CLINICFLOW_CLICKHOUSE_DATABASE", database)
    pg_exec(
        analytics,
        "CREATE SCHEMA raw",
        'CREATE TABLE raw.procedurelog ("ProcNum" bigint PRIMARY KEY, "ProcDate" date, "ProcFee" double precision,'
        ' "ProcStatus" smallint, "ClinicNum" bigint, "ProvNum" bigint)',
        "INSERT INTO raw.procedurelog SELECT g, date '2026-03-01' + (g % 3), 10 + g % 5, "
        "CASE WHEN g % 10 = 0 THEN 1 ELSE 2 END, g % 2, 7 FROM generate_series(1, 300) g",
    )
    spec = discover(REPO / "pipelines", entry_points=False).get("procedures-daily")
    flow = compile_flow(spec)
    day1 = datetime(2026, 3, 2, tzinfo=UTC)
    flow(start=day1, end=datetime(2026, 3, 4, tzinfo=UTC))
    pg_exec(analytics, 'UPDATE raw.procedurelog SET "ProcFee" = 1000 WHERE "ProcNum" = 1')  # a day-2 row changes
    flow(start=day1, end=datetime(2026, 3, 3, tzinfo=UTC))  # re-run day 2 only

    expected = pg_exec(
        analytics,
        'SELECT "ProcDate", "ClinicNum", count(*), sum("ProcFee") FROM raw.procedurelog '
        'WHERE "ProcStatus" = 2 AND "ProcDate" >= \'2026-03-02\' GROUP BY 1, 2 ORDER BY 1, 2',
    )
    connection = ClickHouseConnection(url=SecretStr(url), database=database)
    with connected(connection) as client:
        got = client.query(
            "SELECT day, clinic, procedures, fees FROM procedures_daily FINAL ORDER BY day, clinic"
        ).result_rows
    assert [tuple(r) for r in got] == [(d, c, n, float(f)) for d, c, n, f in expected]
    assert got[0][0] == date(2026, 3, 2)
    assert len(got) == 4


def test_prefect_yaml_schedules_the_examples_as_sync_would() -> None:
    import yaml

    from flows.pipeline_registry import ENTRYPOINT, MANAGED_TAG, deployment_parameters, prefect_schedules

    found = discover(REPO / "pipelines", entry_points=False)
    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    for name in ("referral-providers", "procedures-daily"):
        spec, item = found.get(name), deployments[name]
        assert item["entrypoint"] == ENTRYPOINT
        assert MANAGED_TAG in item["tags"]
        assert item["parameters"] == deployment_parameters(spec, None)
        assert [(s["cron"], s["timezone"]) for s in item["schedules"]] == [(s.cron, s.timezone) for s in spec.schedules]
        assert len(prefect_schedules(spec)) == len(item["schedules"])
