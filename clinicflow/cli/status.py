"""CLI: ``clinicflow status``: the last nightly/load runs from the metrics tables, as a rich table.

Exit codes: 0 the last run succeeded; 1 the last run failed, including a run
that failed before its first table (bad tables.yml, unreachable database,
refused configuration: its message is printed), or is still marked running
after it stopped (a killed run); 2 no run recorded yet, or the analytics
database cannot be read.
"""
from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

EXIT_LAST_FAILED = 1
EXIT_NO_DATA = 2


def status_command(
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many runs to show."),
    run_id: str | None = typer.Option(None, "--run", help="Show the per-table metrics of this run."),
) -> None:
    """Show the last ETL runs (newest first); exit 1 if the last run failed."""
    from blocks.databases import PostgresServer
    from blocks.resolve import ANALYTICS_BLOCK, resolve_block
    from clinicflow.opendental import metrics

    console = Console()
    server = None
    try:
        server = resolve_block(ANALYTICS_BLOCK, PostgresServer)
        conn = server.connect()
        try:
            runs = metrics.last_runs(conn, limit)
            tables = metrics.table_metrics(conn, run_id) if run_id else []
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - the message names user@host/db, never the password
        where = server.describe() if server is not None else "the analytics database"
        console.print(f"[red]cannot read {where}: {type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(EXIT_NO_DATA) from None
    if not runs:
        console.print("no runs recorded yet")
        raise typer.Exit(EXIT_NO_DATA)
    table = Table(title=f"last {len(runs)} runs")
    for header in ("started", "flow", "status", "tables", "failed", "rows", "seconds", "failed tables", "run"):
        table.add_column(header, overflow="fold")
    for run in runs:
        seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
        style = {"ok": "green", "failed": "red"}.get(run.status, "yellow")
        table.add_row(run.started_at.strftime("%Y-%m-%d %H:%M:%S"), run.flow_name,
                      f"[{style}]{run.status}[/{style}]", str(run.tables_total), str(run.tables_failed),
                      str(run.rows_loaded), f"{seconds:.1f}" if seconds is not None else "",
                      ", ".join(run.failed_tables), run.run_id)
    console.print(table)
    from clinicflow.cli.cdc import print_cdc_lag

    print_cdc_lag(console)
    if tables:
        detail = Table(title=f"run {run_id}")
        shown = ("table_name", "status", "mode", "rows", "seconds", "zero_dates", "nul_bytes", "deleted_rows",
                 "missing_rows", "changed_rows", "ranges_recopied", "swept", "verification", "error")
        for header in shown:
            detail.add_column(header.replace("_", " "), overflow="fold")
        for row in tables:
            detail.add_row(*("" if row[k] is None else f"{row[k]:.1f}" if k == "seconds" else str(row[k])
                             for k in shown))
        console.print(detail)
    if runs[0].status != "ok":
        last = runs[0]
        if last.status == "failed" and last.message:
            console.print(f"[red]last run failed: {escape(last.message)}[/red]", soft_wrap=True, highlight=False)
        elif last.status == "running":
            console.print(f"[yellow]last run {last.run_id} is still marked running "
                          "(running now, or killed)[/yellow]", highlight=False)
        raise typer.Exit(EXIT_LAST_FAILED)
