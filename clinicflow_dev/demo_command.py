"""CLI: ``clinicflow demo``, the main job on local defaults.

Seeds a demo OpenDental database into the local MariaDB (``opendental``),
creates the local PostgreSQL analytics database, runs ``nightly_etl``
(replication into ``opendental_replication``, then the load into
PostgreSQL ``raw``), then the DICOM reports flow into a local folder bucket,
and runs the two example pipelines of ``pipelines/`` (a local demo API into
PostgreSQL, ``raw.procedurelog`` into ClickHouse on chDB under ./out), and
prints the last runs. Everything runs on Prefect's embedded server when
no Prefect API is configured.
"""
from __future__ import annotations

import typer
from rich.console import Console


def demo_command(
    reseed: bool = typer.Option(False, "--reseed", help="Recreate the demo OpenDental database even if it exists."),
    dicom: bool = typer.Option(True, "--dicom/--no-dicom", help="Also run the DICOM reports demo into ./out/bucket."),
    pipelines: bool = typer.Option(True, "--pipelines/--no-pipelines",
                                   help="Also run the example pipelines of ./pipelines (toolkit)."),
    ingest: bool = typer.Option(True, "--ingest/--no-ingest", help="Also run the file ingestion demo (offline)."),
) -> None:
    """Seed demo data locally and run the nightly ETL (and the DICOM demo) on local defaults."""
    from blocks.databases import MySQLServer, PostgresServer
    from blocks.resolve import ANALYTICS_BLOCK, SOURCE_BLOCK, resolve_block
    from clinicflow.cli.nightly import run_tables_flow
    from clinicflow.connectors.mysql.sessions import raw_connection
    from clinicflow.opendental.replication.copy_plan import ensure_database
    from clinicflow_dev import generator
    from clinicflow_dev.dicom_demo import ensure_database as ensure_pg_database
    from flows.nightly import nightly_etl

    console = Console()
    source = resolve_block(SOURCE_BLOCK, MySQLServer)
    ensure_database(source)
    conn = raw_connection(source)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")
        existing = int(cur.fetchone()[0])
    conn.close()
    if reseed or existing == 0:
        counts = generator.seed(source)
        console.print(f"seeded demo OpenDental source {source.describe()}: {len(counts)} tables, "
                      f"{sum(counts.values())} rows")
    else:
        console.print(f"demo source {source.describe()} already has {existing} tables (use --reseed to recreate)")
    ensure_pg_database(resolve_block(ANALYTICS_BLOCK, PostgresServer))
    run_tables_flow(nightly_etl, console)
    if dicom:
        from clinicflow.cli.dicom import DICOM_DEMO_FILES, dicom_demo_command

        dicom_demo_command(files_dir=DICOM_DEMO_FILES, bucket_path=None, reset=False)
    if pipelines:
        from clinicflow.cli.pipelines import run_demo_pipelines

        run_demo_pipelines(console)
    if ingest:
        from clinicflow.cli.ingest import INGEST_DEMO_FILES, ingest_demo_command

        ingest_demo_command(files_dir=INGEST_DEMO_FILES, database_block=ANALYTICS_BLOCK)
    console.print("done: see the runs with `uv run clinicflow status`, the tables in PostgreSQL schema raw, "
                  "the DICOM outputs under ./out/bucket, the pipelines' toolkit.referral_providers and "
                  "./out/clickhouse, and the ingested documents in PostgreSQL schema ingest")
