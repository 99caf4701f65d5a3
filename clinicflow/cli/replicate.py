"""CLI: ``clinicflow replicate`` runs replicate_tables (source → replication MySQL) in this process."""

from __future__ import annotations

import typer
from rich.console import Console

from clinicflow.cli.nightly import (
    AllowEmptyOption,
    FullSweepOption,
    ReplicaBlockOption,
    SourceBlockOption,
    TablesFileOption,
    TablesOption,
    block_parameters,
    parse_table_list,
    run_tables_flow,
)


def replicate_command(
    tables: TablesOption = None,
    full_refresh: bool = typer.Option(
        False, "--full-refresh", help="Copy every chosen table fully, ignoring watermarks."
    ),
    tables_file: TablesFileOption = None,
    full_sweep: FullSweepOption = False,
    allow_empty: AllowEmptyOption = False,
    source_block: SourceBlockOption = None,
    replica_block: ReplicaBlockOption = None,
) -> None:
    """Replicate the OpenDental source into the replication MySQL (exit 1 if a table failed)."""
    from flows.replicate import replicate_tables

    run_tables_flow(
        replicate_tables,
        Console(),
        tables=parse_table_list(tables),
        full_refresh=full_refresh,
        tables_file=tables_file,
        full_sweep=full_sweep,
        allow_empty=allow_empty,
        **block_parameters(source_block=source_block, replica_block=replica_block),
    )
