"""CLI: ``analyze-schema`` (write or ``--check`` tables.yml), ``validate`` and ``show``.

Exit codes: 0 fine; 1 drift found, invalid tables.yml, or a table the analysis
could not sample; 2 the source could not be read (connection, credentials).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinicflow.opendental.tables.config import ConfigError, TablesConfig, load_tables_config

EXIT_DRIFT = 1
EXIT_SOURCE_ERROR = 2


def tables_file(path: Path | None) -> Path:
    from clinicflow.opendental.tables.tables_yml import tables_file_path

    return tables_file_path(path)


def source_server(database: str | None) -> Any:
    """The OpenDental source block (resolver: Prefect block or env vars), database optionally replaced."""
    from blocks.databases import MySQLServer
    from blocks.resolve import SOURCE_BLOCK, resolve_block

    server = resolve_block(SOURCE_BLOCK, MySQLServer)
    return server.model_copy(update={"database": database}) if database else server


def _source_failure(console: Console, server: Any, exc: Exception) -> typer.Exit:
    # pymysql messages hold user@host at most, never the password.
    where = server.describe() if server is not None else "the source"
    console.print(f"[red]cannot read {where}: {type(exc).__name__}: {exc}[/red]")
    return typer.Exit(EXIT_SOURCE_ERROR)


def _load_config(console: Console, path: Path) -> TablesConfig:
    try:
        return load_tables_config(path)
    except ConfigError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None


def drift_table(rows: list[dict[str, Any]], title: str) -> Table:
    """The drift rows as a rich table (the JSON output also carries a sentence per change)."""
    table = Table(title=title)
    headers = {"table": "table", "change": "change", "column": "column", "expected": "tables.yml", "actual": "source"}
    for header in headers.values():
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*("" if row[key] is None else str(row[key]) for key in headers))
    return table


def _print_drift(console: Console, report: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(report.to_json())
        return
    if report.has_drift:
        console.print(drift_table(report.to_rows(), "tables.yml drift"))
    console.print(report.summary())


def analyze_schema_command(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="tables.yml to write or check (default: $CLINICFLOW_TABLES_FILE or the project's tables.yml).",
        ),
    ] = None,
    check: bool = typer.Option(
        False, "--check", help="Compare the source with tables.yml instead of writing it; exit 1 on drift."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    database: str | None = typer.Option(None, "--database", help="Source database name (default: the block's)."),
    critical: str | None = typer.Option(None, "--critical", help="Comma-separated critical tables (tier 1)."),
    exclude: str | None = typer.Option(
        None,
        "--exclude",
        help="Comma-separated source tables to leave out "
        "of tables.yml (tables whose names it cannot hold are left out "
        "with a warning).",
    ),
) -> None:
    """Write tables.yml from the live OpenDental source, or check it for drift (--check)."""
    from clinicflow.opendental.tables import analysis_rules, config_drift, schema_analysis, tables_yml

    console = Console()
    path = tables_file(output)
    rules = analysis_rules.rules_with(
        critical_tables=tuple(n.strip() for n in critical.split(",") if n.strip()) if critical else None
    )
    excluded = [n.strip() for n in (exclude or "").split(",") if n.strip()]
    server = None
    if check:
        config = _load_config(console, path)
        try:
            server = source_server(database)
            report = config_drift.check_drift(server, config, rules, exclude=excluded)
        except Exception as exc:  # noqa: BLE001 - reported without secrets, exit 2
            raise _source_failure(console, server, exc) from None
        _print_drift(console, report, as_json)
        raise typer.Exit(EXIT_DRIFT if report.has_drift else 0)
    try:
        server = source_server(database)
        analysis = schema_analysis.analyze_source(server, rules, exclude=excluded)
    except analysis_rules.AnalysisError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except Exception as exc:  # noqa: BLE001 - reported without secrets, exit 2
        raise _source_failure(console, server, exc) from None
    try:
        result = tables_yml.write_tables_yml(analysis, path)
    except analysis_rules.AnalysisError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except OSError as exc:
        console.print(f"[red]{path}: cannot write ({exc.strerror or exc})[/red]")
        raise typer.Exit(1) from None
    if not as_json:
        for name, reason in analysis.skipped.items():
            if reason != "excluded":
                console.print(
                    f"[yellow]warning: table {escape(repr(name))} skipped (not copied): {escape(reason)}[/yellow]",
                    soft_wrap=True,
                    highlight=False,
                )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "output": str(result.path),
                    "changed": result.changed,
                    "tables": result.tables,
                    "skipped": dict(analysis.skipped),
                    "source": analysis.schema.address,
                    "fingerprint": analysis.schema.fingerprint(),
                    "errors": result.errors,
                    "summary": analysis.summary_rows(),
                },
                indent=2,
            )
        )
    else:
        table = Table(title=f"{result.tables} tables from {analysis.schema.address}")
        for column in ("table", "strategy", "watermark", "tier", "rows", "batch_size", "reason"):
            table.add_column(column, overflow="fold")
        for row in analysis.summary_rows():
            table.add_row(
                *(str(row[c]) for c in ("table", "strategy", "watermark", "tier", "rows", "batch_size", "reason"))
            )
        console.print(table)
        state = "written" if result.changed else "unchanged (same content, file left as it was)"
        console.print(f"{result.path}: {state}")
        for error in result.errors.values():
            console.print(f"[red]{error}[/red]")
    raise typer.Exit(1 if result.errors else 0)


def schema_validate_command(
    file: Annotated[Path | None, typer.Option("--file", "-f", help="tables.yml to validate.")] = None,
    live: bool = typer.Option(False, "--live", help="Also compare it with the live source (exit 1 on drift)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database: str | None = typer.Option(None, "--database", help="Source database name (default: the block's)."),
) -> None:
    """Validate tables.yml against the model, and with --live against the source."""
    from clinicflow.opendental.tables import config_drift

    console = Console()
    path = tables_file(file)
    config = _load_config(console, path)
    if not live:
        if as_json:
            typer.echo(json.dumps({"file": str(path), "valid": True, "tables": len(config.tables)}))
        else:
            console.print(f"{path}: valid, {len(config.tables)} tables, {len(config.overrides)} overrides")
        return
    server = None
    try:
        server = source_server(database)
        report = config_drift.check_drift(server, config)
    except Exception as exc:  # noqa: BLE001 - reported without secrets, exit 2
        raise _source_failure(console, server, exc) from None
    _print_drift(console, report, as_json)
    raise typer.Exit(EXIT_DRIFT if report.has_drift else 0)


def schema_show_command(
    table: str = typer.Argument(..., help="Table name."),
    file: Annotated[Path | None, typer.Option("--file", "-f", help="tables.yml to read.")] = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the effective settings of one table (generated settings with overrides applied)."""
    console = Console()
    config = _load_config(console, tables_file(file))
    if table not in config.tables:
        close = difflib.get_close_matches(table, list(config.tables), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        console.print(f"[red]table {table!r} is not in tables.yml{hint}[/red]")
        raise typer.Exit(1)
    effective = config.effective(table).model_dump(mode="json")
    overridden = set(config.overrides.get(table, {}))
    if as_json:
        typer.echo(json.dumps({"table": table, "settings": effective, "overridden": sorted(overridden)}, indent=2))
        return
    view = Table(title=f"{table} (effective settings)")
    view.add_column("field")
    view.add_column("value", overflow="fold")
    view.add_column("source")
    for key, value in effective.items():
        if key == "column_types" and value:
            shown = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            shown = ", ".join(map(str, value)) or "-"
        else:
            shown = "-" if value is None else str(value)
        view.add_row(key, shown, "override" if key in overridden else "generated")
    console.print(view)
