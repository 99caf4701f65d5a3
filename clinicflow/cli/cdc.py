"""CLI: ``clinicflow cdc start|status|stop``: change data capture from the source's binlog (docs/cdc.md).

``start`` runs in this process until stopped (``cdc stop``, SIGTERM, or ``--until-caught-up``); the
``cdc-opendental`` deployment runs the same loop as a long-lived flow. Exit codes of ``start``: 0 stopped
cleanly, 1 a table was failed (the nightly copies it; the reason is printed), 2 CDC could not start (the
source lacks binlog or a privilege, the stored position was purged: the message names the setting).
"""

from __future__ import annotations

import signal
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinicflow.cli.nightly import (
    AnalyticsBlockOption,
    ReplicaBlockOption,
    SourceBlockOption,
    TablesFileOption,
    TablesOption,
    parse_table_list,
)

EXIT_TABLES_FAILED = 1
EXIT_CANNOT_RUN = 2

cdc_app = typer.Typer(
    help="Change data capture from the OpenDental source's binlog (docs/cdc.md).", no_args_is_help=True
)


def _servers(source_block: str | None, replica_block: str | None, analytics_block: str | None) -> tuple[Any, ...]:
    from blocks.databases import MySQLServer, PostgresServer
    from blocks.resolve import ANALYTICS_BLOCK, REPLICATION_BLOCK, SOURCE_BLOCK, resolve_block

    return (
        resolve_block(source_block or SOURCE_BLOCK, MySQLServer),
        resolve_block(replica_block or REPLICATION_BLOCK, MySQLServer),
        resolve_block(analytics_block or ANALYTICS_BLOCK, PostgresServer),
    )


@cdc_app.command("start")
def cdc_start_command(
    tables: TablesOption = None,
    tables_file: TablesFileOption = None,
    until_caught_up: bool = typer.Option(
        False, "--until-caught-up", help="Stop once the binlog's end, as it is now, is applied."
    ),
    server_id: int | None = typer.Option(
        None, "--server-id", help="Replica server id (default: derived from the replica database)."
    ),
    batch_events: int = typer.Option(5000, "--batch-events", min=1, help="Changed rows per applied batch."),
    batch_seconds: float = typer.Option(1.0, "--batch-seconds", min=0.0, help="Or this long after its first change."),
    poll_seconds: float = typer.Option(1.0, "--poll-seconds", min=0.05, help="Wait between reads when caught up."),
    retention_hours: float = typer.Option(
        24.0, "--retention-hours", min=0.0, help="The source must keep binlog files at least this long."
    ),
    resnapshot: bool = typer.Option(False, "--resnapshot", help="Forget the stored position: fresh full copy."),
    source_block: SourceBlockOption = None,
    replica_block: ReplicaBlockOption = None,
    analytics_block: AnalyticsBlockOption = None,
) -> None:
    """Apply the source's binlog to the replica and raw until stopped."""
    from clinicflow.opendental.cdc.checks import CdcError
    from clinicflow.opendental.cdc.runner import CdcOptions, CdcRunner, default_server_id
    from clinicflow.opendental.tables.config import ConfigError, load_tables_config

    console = Console()
    try:
        config = load_tables_config(tables_file)
        src, replica, pg = _servers(source_block, replica_block, analytics_block)
        options = CdcOptions(
            server_id=server_id or default_server_id(replica),
            tables=parse_table_list(tables),
            batch_events=batch_events,
            batch_seconds=batch_seconds,
            poll_seconds=poll_seconds,
            retention_hours=retention_hours,
            until_caught_up=until_caught_up,
            resnapshot=resnapshot,
        )
        runner = CdcRunner(src, replica, pg, config, options)
        # SIGTERM (a pod stopping, Ctrl-C of a service manager) ends the loop cleanly: status "stopped".
        signal.signal(signal.SIGTERM, lambda *_: setattr(runner, "stop_requested", True))
        report = runner.run()
    except (CdcError, ConfigError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    except Exception as exc:  # noqa: BLE001 - block and driver messages never hold passwords
        console.print(
            f"[red]CDC stopped: {type(exc).__name__}: {escape(str(exc))}[/red]", soft_wrap=True, highlight=False
        )
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    console.print(
        f"CDC {report.source}: {report.events} row events in {report.batches} batches, applied up to "
        f"{report.position}" + (" (after a snapshot)" if report.snapshot else ""),
        highlight=False,
    )
    for table, reason in report.failed_tables.items():
        console.print(f"[red]{escape(table)}: {escape(reason)}[/red]", soft_wrap=True, highlight=False)
    if report.failed_tables:
        raise typer.Exit(EXIT_TABLES_FAILED)


def cdc_lag_table(lags: list[Any]) -> Table:
    """The CDC lag per source as a rich table (``cdc status`` and ``clinicflow status``)."""
    table = Table(title="CDC (binlog)")
    for header in ("source", "status", "position", "events behind", "seconds behind", "failed tables", "message"):
        table.add_column(header, overflow="fold")
    for lag in lags:
        row = lag.row()
        table.add_row(
            *(
                escape(row[h])
                for h in ("source", "status", "position", "events behind", "seconds behind", "failed tables", "message")
            )
        )
    return table


@cdc_app.command("status")
def cdc_status_command(source_block: SourceBlockOption = None, replica_block: ReplicaBlockOption = None) -> None:
    """CDC per source: position, lag in events and seconds, failed tables (exit 1 if one failed)."""
    from clinicflow.opendental.cdc.lag import cdc_lag

    console = Console()
    try:
        src, replica, _ = _servers(source_block, replica_block, None)
        lags = cdc_lag(replica, src)
    except Exception as exc:  # noqa: BLE001 - block messages never hold passwords
        console.print(f"[red]cannot read the CDC state: {type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    if not lags:
        console.print("CDC has not run against this replica")
        raise typer.Exit(EXIT_CANNOT_RUN)
    console.print(cdc_lag_table(lags))
    for lag in lags:
        for table, reason in lag.failed_tables.items():
            console.print(f"[red]{escape(table)}: {escape(reason)}[/red]", soft_wrap=True, highlight=False)
    if any(lag.failed_tables or lag.status == "failed" for lag in lags):
        raise typer.Exit(EXIT_TABLES_FAILED)


@cdc_app.command("stop")
def cdc_stop_command(source_block: SourceBlockOption = None, replica_block: ReplicaBlockOption = None) -> None:
    """Ask the running CDC of the source to stop after its current batch."""
    from clinicflow.connectors.mysql.sessions import raw_connected
    from clinicflow.opendental.cdc.state import request_cdc_stop, source_id

    console = Console()
    src, replica, _ = _servers(source_block, replica_block, None)
    with raw_connected(replica) as conn:
        asked = request_cdc_stop(conn, source_id(src))
    if not asked:
        console.print(f"no CDC recorded for {source_id(src)} in {replica.describe()}")
        raise typer.Exit(EXIT_CANNOT_RUN)
    console.print(f"stop requested for CDC of {source_id(src)} (it stops after its current batch)")


def cdc_status_section() -> dict[str, Any]:
    """The ``cdc`` section of ``clinicflow status``: lag per source; failed when a source or a table failed."""
    from clinicflow.core.logs import get_logger
    from clinicflow.opendental.cdc.lag import cdc_lag

    try:
        src, replica, _ = _servers(None, None, None)
        lags = cdc_lag(replica, src)
    except Exception as exc:  # noqa: BLE001 - no replica (CDC not set up) is the common case; `cdc status` says why
        get_logger().debug("CDC state not readable: %s: %s", type(exc).__name__, exc)
        return {"sources": [], "failed": False}
    return {
        "sources": [lag.row() for lag in lags],
        "failed": any(lag.status == "failed" or lag.failed_tables for lag in lags),
    }
