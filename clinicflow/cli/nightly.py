"""CLI: ``clinicflow nightly`` (replication then load) and ``clinicflow load`` (load only).

Both run the Prefect flows of flows/nightly.py in this process: against the
Prefect API when one is configured, else on Prefect's embedded server (the
CronJob fallback). Exit code 0 when every table succeeded, 1 when a table
failed (the flow run is Failed), 2 when the run could not start (bad
tables.yml, unknown table, unreachable database).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from clinicflow.connectors.connections import connected

EXIT_TABLES_FAILED = 1
EXIT_CANNOT_RUN = 2


def parse_table_list(tables: str | None) -> list[str] | None:
    names = [t.strip() for t in (tables or "").split(",") if t.strip()]
    return names or None


def record_config_error(flow_name: str, message: str, parameters: dict[str, Any]) -> str | None:
    """Record a run refused for its tables.yml in the metrics tables; None, or why it could not be recorded."""
    import uuid

    from blocks.databases import PostgresServer
    from blocks.resolve import ANALYTICS_BLOCK, resolve_block
    from clinicflow.opendental import metrics

    server = None
    try:
        server = resolve_block(parameters.get("analytics_block") or ANALYTICS_BLOCK, PostgresServer)
        with connected(server) as conn:
            metrics.record_failed_start(
                conn,
                str(uuid.uuid4()),
                flow_name,
                message,
                parameters={k: v for k, v in parameters.items() if k != "tables_file"},
            )
    except Exception as exc:  # noqa: BLE001 - block messages never hold passwords
        where = server.describe() if server is not None else "the analytics database"
        return f"not recorded in {where}: {type(exc).__name__}: {exc}"
    return None


def _preflight(flow_fn: Any, console: Console, params: dict[str, Any]) -> None:
    """Check tables.yml before starting Prefect: a broken file is one line (no traceback), recorded, exit 2."""
    from clinicflow.opendental.tables.config import ConfigError, load_tables_config
    from clinicflow.opendental.tables.selection import select_tables

    try:
        config = load_tables_config(params.get("tables_file"))
        select_tables(config, params.get("tables"), allow_empty=bool(params.get("allow_empty")))
    except ConfigError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True, highlight=False)
        flow_name = getattr(flow_fn, "fn", flow_fn).__name__
        if flow_name in ("nightly_etl", "load_tables"):  # the flows `clinicflow status` reports
            problem = record_config_error(flow_name, str(exc), params)
            if problem:
                console.print(f"[red]{escape(problem)}[/red]", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_CANNOT_RUN) from None


class PlainProgress:
    """One line per tier and per table (not a terminal: logs, cron mail)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def tier_started(self, tier: int, tables: int) -> None:
        self.console.print(f"tier {tier}: {tables} tables", highlight=False)

    def table_done(self, tier: int, table: str, status: str, rows_copied: int | None, rows_loaded: int) -> None:
        copied = f"{rows_copied} rows copied, " if rows_copied is not None else ""
        self.console.print(f"tier {tier} {table}: {status}, {copied}{rows_loaded} rows loaded", highlight=False)


class RichProgress:
    """A rich bar per tier (tables done of the tier's), with the last table's rows and the running totals."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[int, Any] = {}
        self.copied = self.loaded = 0

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def tier_started(self, tier: int, tables: int) -> None:
        self.tasks[tier] = self.bars.add_task(f"tier {tier}", total=tables)

    def table_done(self, tier: int, table: str, status: str, rows_copied: int | None, rows_loaded: int) -> None:
        self.copied += rows_copied or 0
        self.loaded += rows_loaded
        if tier not in self.tasks:
            self.tasks[tier] = self.bars.add_task(f"tier {tier}", total=None)
        copied = f"{rows_copied} copied, " if rows_copied is not None else ""
        self.bars.update(
            self.tasks[tier],
            advance=1,
            description=f"tier {tier}: {table} {status} ({copied}{rows_loaded} loaded); "
            f"total {self.copied} copied, {self.loaded} loaded",
        )


@contextlib.contextmanager
def table_progress(console: Console) -> Iterator[None]:
    """Progress of the tables run in this process: rich bars on a terminal, plain lines otherwise."""
    from clinicflow.core.progress import watching

    if console.is_terminal:
        with RichProgress(console) as bars, watching(bars):
            yield
    else:
        with watching(PlainProgress(console)):
            yield


def run_tables_flow(flow_fn: Any, console: Console, **params: Any) -> None:
    """Run a tables flow (``flow_fn``, a Prefect flow) in this process; exit 1 on failed tables, 2 if it cannot run."""
    from clinicflow.core.errors import TablesFailed
    from clinicflow.opendental.tables.config import ConfigError
    from flows.runtime import flow_run_settings

    _preflight(flow_fn, console, params)
    try:
        with flow_run_settings(), table_progress(console):
            rows = flow_fn(**params)
    except TablesFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_TABLES_FAILED) from None
    except ConfigError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    except Exception as exc:  # noqa: BLE001 - messages from the blocks never hold passwords
        console.print(f"[red]run could not complete: {type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    console.print(f"{len(rows)} tables ok")


# The options both commands take (nightly = replication + load; load = load only).
TablesOption = Annotated[
    str | None, typer.Option("--tables", help="Comma-separated table names (default: every table in tables.yml).")
]
FullRefreshOption = Annotated[
    bool,
    typer.Option(
        "--full-refresh",
        help="Full copy (nightly) and full load of every chosen table, ignoring watermarks (accepts changed column "
        "types).",
    ),
]
SkipVerificationOption = Annotated[
    bool, typer.Option("--skip-verification", help="Do not compare raw with the replica after loading.")
]
FullSweepOption = Annotated[
    bool,
    typer.Option(
        "--full-sweep",
        help="Reconcile every key range of every keyed table tonight (keys and row checksums), even where tables.yml "
        "turns reconciliation off or checksums a rolling slice (reconcile_slices); a full load's verification "
        "(nightly, load) then compares every value too.",
    ),
]
TablesFileOption = Annotated[
    str | None,
    typer.Option("--tables-file", help="tables.yml to use (default: $CLINICFLOW_TABLES_FILE or the project's)."),
]
AllowEmptyOption = Annotated[
    bool,
    typer.Option(
        "--allow-empty", help="Succeed when tables.yml lists no table (otherwise a run with zero tables is an error)."
    ),
]
# A clinic's own blocks (default: the well-known names of blocks/resolve.py); one set per clinic.
SourceBlockOption = Annotated[
    str | None, typer.Option("--source-block", help="Name of the OpenDental source block (default: opendental-source).")
]
ReplicaBlockOption = Annotated[
    str | None,
    typer.Option("--replica-block", help="Name of the replication MySQL block (default: opendental-replication)."),
]
AnalyticsBlockOption = Annotated[
    str | None,
    typer.Option("--analytics-block", help="Name of the analytics PostgreSQL block (default: analytics-postgres)."),
]


def block_parameters(**names: str | None) -> dict[str, str]:
    """The block-name parameters given on the command line (the flows' defaults stand for the others)."""
    return {key: value for key, value in names.items() if value}


def nightly_command(
    tables: TablesOption = None,
    full_refresh: FullRefreshOption = False,
    skip_verification: SkipVerificationOption = False,
    full_sweep: FullSweepOption = False,
    tables_file: TablesFileOption = None,
    allow_empty: AllowEmptyOption = False,
    source_block: SourceBlockOption = None,
    replica_block: ReplicaBlockOption = None,
    analytics_block: AnalyticsBlockOption = None,
    mode: Annotated[
        str,
        typer.Option(
            help="in-pod | fanout (partitions as child runs of nightly-tables on the work pool; needs "
            "PREFECT_API_URL, docs/scale-out.md)."
        ),
    ] = "in-pod",
    fanout_width: Annotated[int, typer.Option(help="fanout: child runs started at a time.")] = 4,
) -> None:
    """Run the nightly ETL: OpenDental → replication MySQL → PostgreSQL raw, verified."""
    from clinicflow.cli.fanout import require_api_for_fanout
    from flows.nightly import nightly_etl

    console = Console()
    require_api_for_fanout(mode, console)
    fanout = {"mode": mode, "fanout_width": fanout_width} if mode == "fanout" else {}
    run_tables_flow(
        nightly_etl,
        console,
        tables=parse_table_list(tables),
        full_refresh=full_refresh,
        skip_verification=skip_verification,
        full_sweep=full_sweep,
        tables_file=tables_file,
        allow_empty=allow_empty,
        **fanout,
        **block_parameters(source_block=source_block, replica_block=replica_block, analytics_block=analytics_block),
    )


def load_command(
    tables: TablesOption = None,
    full_refresh: FullRefreshOption = False,
    skip_verification: SkipVerificationOption = False,
    full_sweep: FullSweepOption = False,
    tables_file: TablesFileOption = None,
    allow_empty: AllowEmptyOption = False,
    replica_block: ReplicaBlockOption = None,
    analytics_block: AnalyticsBlockOption = None,
) -> None:
    """Load the replication MySQL into PostgreSQL raw (no replication step)."""
    from flows.nightly import load_tables

    run_tables_flow(
        load_tables,
        Console(),
        tables=parse_table_list(tables),
        full_refresh=full_refresh,
        skip_verification=skip_verification,
        full_sweep=full_sweep,
        tables_file=tables_file,
        allow_empty=allow_empty,
        **block_parameters(replica_block=replica_block, analytics_block=analytics_block),
    )
