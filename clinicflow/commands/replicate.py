"""CLI: ``clinicflow replicate`` runs replicate_tables (source → replication MySQL) in this process."""
from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    @app.command("replicate")
    def replicate_command(
        tables: Optional[str] = typer.Option(None, "--tables", help="Comma-separated table names (default: all of tables.yml)."),
        full_refresh: bool = typer.Option(False, "--full-refresh", help="Copy every chosen table fully, ignoring watermarks."),
        tables_file: Optional[str] = typer.Option(None, "--tables-file", help="tables.yml to use."),
    ) -> None:
        """Replicate the OpenDental source into the replication MySQL (exit 1 if a table failed)."""
        from clinicflow.commands.nightly import _run, _table_list
        from flows.replicate import replicate_tables

        _run(replicate_tables, Console(), tables=_table_list(tables), full_refresh=full_refresh, tables_file=tables_file)
