"""CLI: ``clinicflow status``: the latest runs of every subsystem, as tables or ``--json``.

Subsystems: ``nightly`` (OpenDental nightly and load runs, ``clinicflow.etl_runs``),
``ingest`` (``ingest.runs`` and the open dead letters by reason), ``processing``
(``processing.results`` by status), ``dicom`` (runs by dataset from the DICOM
state tables in the reports database), ``pipelines`` (the last run of each
pipeline) and ``fanout`` (the partitions of the last fanned-out parent), the
last two from the Prefect API when one is configured, and ``cdc`` (the binlog CDC's
lag per source, from the replica's CDC state).

Exit codes: 0 no subsystem's latest run failed; 1 the latest run of a subsystem
(of those ``--subsystem`` names) failed, including a nightly run that failed
before its first table or is still marked running after it stopped (a killed
run); 2 nothing recorded yet, or the analytics database cannot be read.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinicflow.cli.status_sections import collect
from clinicflow.connectors.connections import connected
from clinicflow.core.verdicts import shortened

EXIT_LAST_FAILED = 1
EXIT_NO_DATA = 2
SUBSYSTEMS = ("nightly", "ingest", "processing", "dicom", "pipelines", "fanout", "cdc")


def _nightly_table(section: dict[str, Any]) -> Table:
    runs = len(section["runs"])
    table = Table(title=f"nightly: last {runs} run{'s' if runs != 1 else ''}")
    for header in ("started", "flow", "status", "tables", "failed", "rows", "seconds", "failed tables", "run"):
        table.add_column(header, overflow="fold")
    for run in section["runs"]:
        seconds = (run["finished_at"] - run["started_at"]).total_seconds() if run["finished_at"] else None
        style = {"ok": "green", "failed": "red"}.get(run["status"], "yellow")
        table.add_row(
            run["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
            run["flow"],
            f"[{style}]{run['status']}[/{style}]",
            str(run["tables"]),
            str(run["tables_failed"]),
            str(run["rows"]),
            f"{seconds:.1f}" if seconds is not None else "",
            ", ".join(run["failed_tables"]),
            run["run_id"],
        )
    return table


CELL_CHARS = 200


def _cell(value: Any) -> str:
    """A table cell: a time to the second (as the nightly's), anything else as text; a longer text is cut at a
    word, with an ellipsis ("staged (16): s" read as if the message ended there); `--json` has it whole."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return escape(shortened(str(value), CELL_CHARS))


def _simple_table(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def _print(console: Console, report: dict[str, Any]) -> None:
    for name, section in report.items():
        if "unavailable" in section:
            console.print(f"{name}: {section['unavailable']}", highlight=False)
        elif name == "nightly" and section["runs"]:
            console.print(_nightly_table(section))
        elif name == "ingest" and (section["runs"] or section["open_dead_letters"]):
            console.print(
                _simple_table(
                    "ingestion runs", section["runs"], ("started_at", "status", "mode", "pattern", "message", "run_id")
                )
            )
            if section["open_dead_letters"]:
                console.print(
                    _simple_table(
                        "open ingestion dead letters", section["open_dead_letters"], ("stage", "reason", "open")
                    )
                )
        elif name == "processing" and section["jobs"]:
            counts = ", ".join(f"{k} {v}" for k, v in section["jobs_by_status"].items())
            console.print(
                _simple_table(
                    f"processing jobs ({counts})",
                    section["jobs"],
                    ("id", "processing_type", "status", "error", "created_at"),
                )
            )
        elif name == "dicom" and section["runs"]:
            console.print(
                _simple_table(
                    "DICOM runs",
                    section["runs"],
                    ("last_activity", "dataset", "files_done", "failures", "verdict", "message", "run_id"),
                )
            )
        elif name == "pipelines" and section["runs"]:
            console.print(
                _simple_table(
                    "pipelines: last run of each", section["runs"], ("pipeline", "state", "started_at", "message")
                )
            )
        elif name == "cdc" and section["sources"]:
            console.print(
                _simple_table(
                    "CDC (binlog) lag per source",
                    section["sources"],
                    ("source", "status", "position", "events behind", "seconds behind", "failed tables", "message"),
                )
            )
        elif name == "fanout" and section["partitions"]:
            console.print(
                _simple_table(
                    f"fan-out partitions of run {section['run_key']}",
                    section["partitions"],
                    ("partition", "state", "started_at", "ended_at"),
                )
            )


def _recorded(report: dict[str, Any]) -> bool:
    keys = ("runs", "jobs", "partitions", "open_dead_letters", "sources")
    return any(section.get(k) for section in report.values() for k in keys)


def status_command(
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many runs to show per subsystem."),
    run_id: str | None = typer.Option(None, "--run", help="Show the per-table metrics of this nightly run."),
    subsystem: list[str] | None = typer.Option(
        None,
        "--subsystem",
        "-s",
        help="Only these (repeatable, or comma-separated): nightly, ingest, processing, dicom, pipelines, fanout, cdc.",
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document (for monitoring)."),
) -> None:
    """Show the latest runs of every subsystem; exit 1 if the latest run of one of them failed."""
    from blocks.databases import PostgresServer
    from blocks.resolve import ANALYTICS_BLOCK, resolve_block
    from clinicflow.opendental import metrics

    console = Console()
    # --run asks about one nightly run: the nightly's runs, not every subsystem's, unless others are named.
    asked = [name.strip() for value in subsystem or [] for name in value.split(",") if name.strip()]  # -s a,b too
    chosen = list(dict.fromkeys(asked or (["nightly"] if run_id else SUBSYSTEMS)))
    unknown = sorted(set(chosen) - set(SUBSYSTEMS))
    if unknown:
        raise typer.BadParameter(
            f"unknown subsystem(s) {unknown}; use {', '.join(SUBSYSTEMS)}", param_hint="--subsystem"
        )
    tables: list[dict[str, Any]] = []
    try:
        report = collect(chosen, limit)
        if run_id:
            with connected(resolve_block(ANALYTICS_BLOCK, PostgresServer)) as conn:
                tables = metrics.table_metrics(conn, run_id)
    except Exception as exc:  # noqa: BLE001 - the message names user@host/db, never the password
        try:
            where = resolve_block(ANALYTICS_BLOCK, PostgresServer).describe()
        except Exception:  # noqa: BLE001 - only names the database in the message
            where = "the analytics database"
        console.print(f"[red]cannot read {where}: {type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(EXIT_NO_DATA) from None
    if run_id and not tables:
        console.print(
            f"[red]no nightly run {escape(run_id)} recorded (`clinicflow status -s nightly` lists the ids)[/red]"
        )
        raise typer.Exit(EXIT_NO_DATA)
    failed = [name for name, section in report.items() if section.get("failed")]
    if as_json:
        typer.echo(json.dumps({"subsystems": report, "failed": failed}, default=str, indent=2))
    else:
        _print(console, report)
        if tables:
            detail = Table(title=f"run {run_id}")
            shown = (
                "table_name",
                "status",
                "mode",
                "rows",
                "seconds",
                "zero_dates",
                "nul_bytes",
                "deleted_rows",
                "missing_rows",
                "changed_rows",
                "ranges_recopied",
                "swept",
                "verification",
                "error",
            )
            for header in shown:
                detail.add_column(header.replace("_", " "), overflow="fold")
            for row in tables:
                detail.add_row(
                    *("" if row[k] is None else f"{row[k]:.1f}" if k == "seconds" else str(row[k]) for k in shown)
                )
            console.print(detail)
        nightly = report.get("nightly", {}).get("runs") or []
        if nightly and nightly[0]["status"] != "ok":
            last = nightly[0]
            if last["status"] == "failed" and last["message"]:
                console.print(f"[red]last run failed: {escape(last['message'])}[/red]", soft_wrap=True, highlight=False)
            elif last["status"] == "running":
                console.print(
                    f"[yellow]last run {last['run_id']} is still marked running (running now, or killed)[/yellow]",
                    highlight=False,
                )
        if failed:
            console.print(f"[red]latest run failed: {', '.join(failed)}[/red]", highlight=False)
        elif not _recorded(report):
            console.print("no runs recorded yet")
    if failed:
        raise typer.Exit(EXIT_LAST_FAILED)
    if not _recorded(report):
        raise typer.Exit(EXIT_NO_DATA)
