"""CLI: ``clinicflow blocks setup [--from-env | --file F]`` and ``clinicflow blocks register``.

The work is in :mod:`blocks.setup`, imported only when one of these
commands runs: it pulls in prefect-gcp and pandas (seconds of imports), which every other
command (the CronJob's ``nightly`` among them) would otherwise pay at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

blocks_app = typer.Typer(help="Prefect blocks used by the deployments (credentials, buckets).", no_args_is_help=True)


@blocks_app.command("setup")
def blocks_setup_command(
    from_env: bool = typer.Option(False, "--from-env", help="Build blocks from CLINICFLOW_<NAME>_* variables."),
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="YAML file: {blocks: {NAME: {type: SLUG, host: ..., database: ...}}} (fields flat)."
        ),
    ] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Set up only this block (repeatable).")] = None,
) -> None:
    """Create or update every block the deployments use (idempotent)."""
    from blocks.setup import BlockSetupError, require_api, setup_blocks

    console = Console()
    try:
        outcomes = setup_blocks(from_env=from_env, file=file, names=only)
    except BlockSetupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    table = Table(title=f"blocks on {require_api()}")
    for header in ("block", "type", "result", "detail"):
        table.add_column(header, overflow="fold")
    for outcome in outcomes:
        table.add_row(outcome.name, outcome.block_type, outcome.action, outcome.detail)
    console.print(table)
    failed = [o.name for o in outcomes if o.action == "failed"]
    skipped = [o.name for o in outcomes if o.action == "skipped"]
    if failed:
        console.print(f"[red]{len(failed)} block(s) failed: {', '.join(failed)}[/red]")
    if only and skipped:
        console.print(f"[red]requested but not set up: {', '.join(skipped)}[/red]")
    if failed or (only and skipped) or not any(o.action in ("created", "updated", "unchanged") for o in outcomes):
        raise typer.Exit(1)


@blocks_app.command("register")
def blocks_register_command() -> None:
    """Register clinicflow's block types (same as `prefect block register -m blocks.databases`)."""
    from blocks.setup import BlockSetupError, register_block_types

    console = Console()
    try:
        slugs = register_block_types()
    except BlockSetupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print("registered: " + ", ".join(slugs))
