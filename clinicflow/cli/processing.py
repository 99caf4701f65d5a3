"""CLI: ``clinicflow processing workers``: task workers that run the processing service's jobs.

Exit codes: 0 stopped normally; 2 cannot start (no Prefect API URL, unresolvable database or bucket block).
"""

from __future__ import annotations

import typer

EXIT_CANNOT_START = 2

processing_app = typer.Typer(help="The data-processing service's task workers.", no_args_is_help=True)


@processing_app.command("workers")
def workers_command(
    concurrency: int = typer.Option(
        1, "--concurrency", "-c", min=1, help="Task-worker processes (each a warm Python; like Celery's --concurrency)."
    ),
    limit: int = typer.Option(2, "--limit", min=1, help="Runs at once per process (threads)."),
) -> None:
    """Run task workers for the jobs the API submits (background runs of process-result-background)."""
    from clinicflow.service.task_worker import run_workers

    try:
        code = run_workers(concurrency, limit)
    except RuntimeError as exc:
        typer.echo(f"cannot start: {exc}", err=True)
        raise typer.Exit(EXIT_CANNOT_START) from None
    # Outside the try: typer.Exit is a RuntimeError (a normal stop was reported as "cannot start: 0", exit 2).
    raise typer.Exit(code)
