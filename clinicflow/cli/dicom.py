"""CLI: ``clinicflow dicom run|demo|status|reset`` — the DICOM reports extraction.

``run`` runs flow ``extract_dicom_reports`` in-process (with or without a
Prefect API; blocks come from the resolver) and exits 1 when the flow ends
Failed. SIGTERM stops a run cleanly: downloads in progress end, finished
files stay recorded, the flow ends Failed saying so (a second SIGTERM kills). ``demo`` seeds the demo
reports (pydicom's test files) and runs the flow into a local folder. ``status`` shows a dataset's durable progress;
``reset`` forgets it so the next run starts over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinicflow.cli.options_cli import model_options
from clinicflow.dicom.options import DicomRunOptions

DICOM_DEMO_FILES = Path("./out/dicom-demo-files")

dicom_app = typer.Typer(help="DICOM reports: PostgreSQL reports → DICOM → JPG + CSV in a bucket.", no_args_is_help=True)


def _run_flow(console: Console, **parameters: Any) -> None:
    from flows.dicom_reports import extract_dicom_reports
    from flows.runtime import flow_run_settings

    with flow_run_settings():
        state: Any = extract_dicom_reports(**parameters, return_state=True)
    if state.is_failed():
        console.print(f"[red]extract_dicom_reports failed: {state.message}[/red]")
        raise typer.Exit(1)
    result = state.result()
    table = Table(title=f"DICOM reports {result['dataset']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    console.print(table)


def _state_store(dataset: str, schema: str, state_block: str | None) -> Any:
    from blocks.databases import PostgresServer
    from blocks.resolve import DICOM_REPORTS_BLOCK, resolve_block
    from clinicflow.dicom.state import StateStore

    return StateStore(resolve_block(state_block or DICOM_REPORTS_BLOCK, PostgresServer), dataset, schema)


@dicom_app.command("run")
@model_options(
    DicomRunOptions,
    # The blocks package owns these names; importing it would load Prefect before any command runs.
    defaults={"reports_block": "dicom-reports-postgres", "bucket_block": "dicom-reports-bucket"},
    exclude=frozenset({"run_key"}),
    names={"allowed_roots": "allowed_root"},
    help={
        "mode": "in-pod | fanout (page ranges as child runs of dicom-reports-range on "
        "the work pool; needs PREFECT_API_URL, docs/scale-out.md).",
        "partitions": "fanout: page-range partitions.",
    },
)
def dicom_run_command(**values: Any) -> None:
    """Run the extraction (exit 1 if the flow fails)."""
    from clinicflow.cli.fanout import require_api_for_fanout
    from clinicflow.dicom.options import DicomOptionsError

    console = Console(stderr=True)
    require_api_for_fanout(values["mode"], console)
    try:
        options = DicomRunOptions.from_values(**values)
    except DicomOptionsError as exc:
        if "bucket_kind" in exc.problems:  # a usage error, as Typer reports its own (exit 2)
            raise typer.BadParameter("must be local, gcs or s3", param_hint="--bucket-kind") from None
        # Other bad values exit 1, as when the flow refused them, but before Prefect starts.
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    _run_flow(console, **options.flow_parameters())


@dicom_app.command("demo")
def dicom_demo_command(
    files_dir: Annotated[Path, typer.Option(help="Where the demo DICOM files are copied.")] = DICOM_DEMO_FILES,
    bucket_path: Annotated[
        Path | None, typer.Option(help="Local bucket folder (default: the bucket block's, ./out/bucket).")
    ] = None,
    reset: bool = typer.Option(
        False, "--reset", help="Forget earlier demo progress first (a rerun without it skips the files already done)."
    ),
) -> None:
    """Seed demo reports (pydicom's test files, a few bad ones) and run the flow into a local folder."""
    import os

    from blocks.buckets import DICOM_BUCKET_BLOCK
    from blocks.databases import PostgresServer
    from blocks.resolve import DICOM_REPORTS_BLOCK, env_prefix, resolve_block
    from clinicflow_dev.dicom_demo import DEMO_FILES, ensure_database, seed_demo_reports

    console = Console(stderr=True)
    server = resolve_block(DICOM_REPORTS_BLOCK, PostgresServer)
    ensure_database(server)
    files = seed_demo_reports(server, files_dir)
    console.print(f"seeded {files} demo files into {files_dir} and view dicom_reports on {server.describe()}")
    if bucket_path is not None:
        os.environ[env_prefix(DICOM_BUCKET_BLOCK) + "PATH"] = str(bucket_path)
    if reset:
        with _state_store("dicom-reports", "clinicflow_dicom", None) as store:
            store.ensure_schema()
            store.reset()
    # The demo's bad files are there on purpose: the run succeeds with exactly those failures.
    _run_flow(
        console,
        bucket_kind="local",
        failure_threshold=sum(1 for f in DEMO_FILES if f.expected_failure),
        allowed_roots=[str(files_dir.resolve())],
    )


@dicom_app.command("status")
def dicom_status_command(
    dataset: str = typer.Option("dicom-reports", help="Dataset (the run's --dataset)."),
    state_schema: str = typer.Option("clinicflow_dicom", help="Schema of the DICOM state tables."),
    state_block: str | None = typer.Option(None, help="PostgresServer block of the state (default: the reports')."),
) -> None:
    """Files done/failed/uploading and objects uploaded (more than once, if ever) for a dataset; exit 2 when
    nothing is recorded for it."""
    with _state_store(dataset, state_schema, state_block) as store:
        counts = store.status_counts()
        uploads = store.upload_counts()
    if not counts and not uploads:
        # All zeros and exit 0 read as "a dataset with nothing to do" (a mistyped --dataset looked fine).
        Console(stderr=True).print(f"[red]nothing recorded for DICOM dataset {escape(dataset)!r}[/red]")
        raise typer.Exit(2)
    table = Table(title=f"DICOM dataset {dataset}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for status in ("done", "failed", "uploading"):
        table.add_row(f"files {status}", str(counts.get(status, 0)))
    table.add_row("objects in upload log", str(len(uploads)))
    table.add_row("objects uploaded more than once", str(sum(1 for n in uploads.values() if n > 1)))
    Console().print(table)


@dicom_app.command("reset")
def dicom_reset_command(
    dataset: str = typer.Option(..., help="Dataset whose progress is forgotten."),
    state_schema: str = typer.Option("clinicflow_dicom", help="Schema of the DICOM state tables."),
    state_block: str | None = typer.Option(None, help="PostgresServer block of the state (default: the reports')."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Forget a dataset's progress (the bucket is untouched; the next run converts everything again)."""
    if not yes:
        typer.confirm(f"Forget all progress of dataset {dataset!r}?", abort=True)
    with _state_store(dataset, state_schema, state_block) as store:
        store.ensure_schema()
        store.reset()
    typer.echo(f"progress of {dataset} forgotten")
