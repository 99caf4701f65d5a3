"""CLI: ``clinicflow demo``, the main job on local defaults.

Seeds a demo OpenDental database into the local MariaDB (``opendental``),
creates the local PostgreSQL analytics database, runs ``nightly_etl``
(replication into ``opendental_replication``, then the load into
PostgreSQL ``raw``), then the DICOM reports flow into a local folder bucket,
and runs the two example pipelines of ``pipelines/`` (a local demo API into
PostgreSQL, ``raw.procedurelog`` into ClickHouse on chDB under ./out), and
prints the last runs. Everything runs on Prefect's embedded server when
no Prefect API is configured.

Then (``--serve``, the default) it starts the data-processing service on
local defaults (:mod:`clinicflow_dev.demo_service`): a local Prefect
server under ./out/demo-service, a process work pool and worker, the
``process-data`` deployment, ``clinicflow serve`` on port 8000 (another free
port if 8000 is taken) with a generated API token (or CLINICFLOW_API_TOKEN),
and one rolling_mean and one peak_detection job on a small vitals CSV. It
prints the results page's URL, the token and the Prefect UI's URL, and serves
until Ctrl-C or SIGTERM, then stops the service, the worker and the server.
``--serve-only`` starts just that; ``--no-serve`` ends after the runs.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

SERVE_DIR = Path("./out/demo-service")


def demo_command(
    reseed: bool = typer.Option(False, "--reseed", help="Recreate the demo OpenDental database even if it exists."),
    dicom: bool = typer.Option(True, "--dicom/--no-dicom", help="Also run the DICOM reports demo into ./out/bucket."),
    pipelines: bool = typer.Option(
        True, "--pipelines/--no-pipelines", help="Also run the example pipelines of ./pipelines (toolkit)."
    ),
    ingest: bool = typer.Option(True, "--ingest/--no-ingest", help="Also run the file ingestion demo (offline)."),
    serve: bool = typer.Option(
        True,
        "--serve/--no-serve",
        help="Then start the data-processing service (local Prefect server, worker, API) and serve until Ctrl-C.",
    ),
    serve_only: bool = typer.Option(False, "--serve-only", help="Only start the data-processing service."),
    serve_port: int = typer.Option(
        8000, "--serve-port", min=0, max=65535, help="Port of the service (0 or a busy port: a free one)."
    ),
    prefect_port: int = typer.Option(
        4200,
        "--prefect-port",
        min=0,
        max=65535,
        help="Port of the demo's Prefect server (0 or a busy port: a free one).",
    ),
    serve_dir: Path = typer.Option(
        SERVE_DIR, "--serve-dir", help="Folder of the service's Prefect home, bucket, scripts and logs."
    ),
) -> None:
    """Seed demo data locally, run the nightly ETL and the other demos, then serve the processing service."""
    if serve_only:
        _serve(serve_dir, serve_port, prefect_port)
        return
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
        console.print(
            f"seeded demo OpenDental source {source.describe()}: {len(counts)} tables, {sum(counts.values())} rows"
        )
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
    console.print(
        "done: see the runs with `uv run clinicflow status`, the tables in PostgreSQL schema raw, "
        "the DICOM outputs under ./out/bucket, the pipelines' toolkit.referral_providers and "
        "./out/clickhouse, and the ingested documents in PostgreSQL schema ingest"
    )
    if serve:
        _serve(serve_dir, serve_port, prefect_port)


def _serve(serve_dir: Path, serve_port: int, prefect_port: int) -> None:
    from blocks.databases import PostgresServer
    from blocks.resolve import ANALYTICS_BLOCK, resolve_block
    from clinicflow_dev.demo_service import serve_demo
    from clinicflow_dev.dicom_demo import ensure_database

    try:
        ensure_database(resolve_block(ANALYTICS_BLOCK, PostgresServer))  # --serve-only on a fresh machine
    except Exception as exc:  # noqa: BLE001 - resolver and driver messages name host and database, no password
        typer.echo(f"the processing service could not start: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None

    code = serve_demo(serve_dir, service_port=serve_port, prefect_port=prefect_port, echo=typer.echo)
    if code:
        raise typer.Exit(code)
