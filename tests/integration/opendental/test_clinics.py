"""Two clinics side by side: each nightly_etl run names its clinic's blocks (source, replica, analytics), both run
at once in one process, and each clinic's raw tables equal its own source and nothing of the other's."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.connectors.mysql import catalog, checksums, sessions
from clinicflow.core.sql import quote_qualified
from clinicflow.opendental import metrics
from clinicflow.opendental.tables.config import load_tables_config
from clinicflow.opendental.warehouse import load_plan, verify
from clinicflow_dev import generator
from tests.integration.opendental.warehouse.conftest import pg_query, tables_yml

# Few tables, a few hundred rows each: enough for chunked full loads, small-table groups and two tiers.
TABLES = ("patient", "appointment", "procedurelog", "definition", "payment", "patplan")


@dataclass
class Clinic:
    name: str
    source: MySQLServer
    replica: MySQLServer
    pg: PostgresServer
    tables_file: Path
    counts: dict[str, int]

    def blocks(self) -> dict[str, str]:
        return {
            "source_block": f"{self.name}-source",
            "replica_block": f"{self.name}-replication",
            "analytics_block": f"{self.name}-analytics",
        }


def _set_env(monkeypatch: pytest.MonkeyPatch, block: str, server: MySQLServer | PostgresServer) -> None:
    prefix = "CLINICFLOW_" + block.upper().replace("-", "_") + "_"
    monkeypatch.setenv(prefix + "HOST", server.host)
    monkeypatch.setenv(prefix + "PORT", str(server.port))
    monkeypatch.setenv(prefix + "USER", server.username)
    monkeypatch.setenv(prefix + "DATABASE", server.database)


def _make_clinic(
    name: str,
    seed: int,
    scale: float,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_mysql_db: Callable[[str], MySQLServer],
    make_pg_db: Callable[[str], PostgresServer],
) -> Clinic:
    source, replica, pg = make_mysql_db(f"{name[-1]}src"), make_mysql_db(f"{name[-1]}rep"), make_pg_db(f"{name[-1]}pg")
    counts = generator.seed(source, scale=scale, seed=seed, edge_cases=False)
    counts = {t: n for t, n in counts.items() if t in TABLES}
    path = tmp_path / f"{name}-tables.yml"
    path.write_text(yaml.safe_dump(tables_yml(counts, batch_size=300)), encoding="utf-8")
    clinic = Clinic(name, source, replica, pg, path, counts)
    for block, server in zip(clinic.blocks().values(), (source, replica, pg), strict=True):
        _set_env(monkeypatch, block, server)
    return clinic


def _raw_checks(clinic: Clinic) -> dict[str, str]:
    """Per table: raw equals the clinic's replica (counts + canonical checksums); returns the replica checksums."""
    config = load_tables_config(clinic.tables_file)
    found: dict[str, str] = {}
    my = sessions.raw_connection(clinic.replica)
    pg = clinic.pg.connect()
    try:
        for table in clinic.counts:
            found[table] = checksums.table_checksum(clinic.replica, table)
            plan = load_plan.plan_load(catalog.read_table(my, table), config.effective(table))
            result = verify.verify_table(my, pg, plan, bucket_rows=500)
            assert result.ok, f"{clinic.name} {table}: {result.summary()}"
    finally:
        my.close()
        pg.close()
    return found


@pytest.mark.slow
def test_two_clinics_run_side_by_side(
    make_mysql_db: Callable[[str], MySQLServer],
    make_pg_db: Callable[[str], PostgresServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    prefect_server: None,
) -> None:
    from flows.nightly import nightly_etl

    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    # The well-known blocks point at a closed port: a run that fell back to them would fail, not pass silently.
    for block in ("OPENDENTAL_SOURCE", "OPENDENTAL_REPLICATION", "ANALYTICS_POSTGRES"):
        monkeypatch.setenv(f"CLINICFLOW_{block}_HOST", "127.0.0.1")
        monkeypatch.setenv(f"CLINICFLOW_{block}_PORT", "9")
    monkeypatch.delenv("CLINICFLOW_TABLES_FILE", raising=False)
    clinic_a = _make_clinic("clinic-a", 11, 0.1, tmp_path, monkeypatch, make_mysql_db, make_pg_db)
    clinic_b = _make_clinic("clinic-b", 23, 0.15, tmp_path, monkeypatch, make_mysql_db, make_pg_db)
    assert clinic_a.counts["procedurelog"] != clinic_b.counts["procedurelog"]

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {
            c.name: pool.submit(nightly_etl, tables_file=str(c.tables_file), **c.blocks()) for c in (clinic_a, clinic_b)
        }
        results = {name: future.result() for name, future in runs.items()}

    sums: dict[str, dict[str, str]] = {}
    for clinic in (clinic_a, clinic_b):
        rows = {r["table"]: r for r in results[clinic.name]}
        assert set(rows) == set(clinic.counts), clinic.name
        assert all(r["status"] == "ok" and r["verification"] == "ok" for r in rows.values()), rows
        for table, count in clinic.counts.items():
            assert rows[table]["rows"] == count, (clinic.name, table)
            raw = pg_query(clinic.pg, f"SELECT count(*) FROM {quote_qualified('raw', table, 'postgres')}")[0][0]
            assert raw == count, (clinic.name, table)
        sums[clinic.name] = _raw_checks(clinic)
        for table, checksum in sums[clinic.name].items():
            assert checksum == checksums.table_checksum(clinic.source, table), (clinic.name, table)
        conn = clinic.pg.connect()
        try:
            runs_recorded = metrics.last_runs(conn, 5)
        finally:
            conn.close()
        assert len(runs_recorded) == 1, clinic.name
        assert runs_recorded[0].status == "ok", clinic.name
        assert runs_recorded[0].tables_total == len(clinic.counts)

    # Different seeds and sizes: tables that differ between the sources differ between the clinics' targets too.
    differing = [
        t
        for t in TABLES
        if checksums.table_checksum(clinic_a.source, t) != checksums.table_checksum(clinic_b.source, t)
    ]
    assert {"patient", "appointment", "procedurelog"} <= set(differing)
    for table in differing:
        assert sums["clinic-a"][table] != sums["clinic-b"][table], table
