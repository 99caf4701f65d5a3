"""CLI: ``clinicflow pipelines list | show | run | sync | backfill`` (the pipeline toolkit).

Exit codes: 0 ok; 1 a pipeline run failed or discovery reported errors; 2 the
command could not run (unknown pipeline, bad parameter, no deployment, bad
schedule, missing work pool).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clinicflow.connectors.connections import connected

EXIT_FAILED = 1
EXIT_CANNOT_RUN = 2

pipelines_app = typer.Typer(
    help="Pipelines: *_pipeline.py modules, deployed as Prefect deployments.", no_args_is_help=True
)

FolderOption = Annotated[
    str | None,
    typer.Option(
        "--folder", help="Folder of *_pipeline.py modules (default: $CLINICFLOW_PIPELINES_DIR or ./pipelines)."
    ),
]


def parse_params(items: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON (numbers, true, null, lists) is taken as JSON, else as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param {item!r}: use NAME=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _schedule_text(spec: Any) -> str:
    parts = []
    for s in spec.schedules:
        what = f"cron {s.cron}" if hasattr(s, "cron") else f"every {s.interval}"
        parts.append(f"{what} ({s.timezone}){'' if s.active else ' inactive'}")
    return "; ".join(parts) or "-"


def _tree(node: Any, indent: str = "") -> list[str]:
    from clinicflow.toolkit.compose import Conditional, Leaf, Parallel, Sequential

    if isinstance(node, Leaf):
        extra = f" (retries {node.retries}, on {node.retry_on})" if node.retries else ""
        return [f"{indent}- {node.name}{extra}"]
    if isinstance(node, Sequential):
        head = f"{indent}sequential{'' if node.stop_on_error else ' (continue on error)'}:"
    elif isinstance(node, Parallel):
        head = f"{indent}parallel (max {node.max_workers}{', stop on error' if node.stop_on_error else ''}):"
    elif isinstance(node, Conditional):
        lines = [f"{indent}{node.name} then:", *_tree(node.then, indent + "  ")]
        if node.otherwise is not None:
            lines += [f"{indent}{node.name} otherwise:", *_tree(node.otherwise, indent + "  ")]
        return lines
    else:
        return [f"{indent}?"]
    return [head] + [line for child in node.steps for line in _tree(child, indent + "  ")]


def _discover(folder: str | None, console: Console) -> Any:
    from clinicflow.toolkit.discovery import discover
    from clinicflow.toolkit.spec import unused_parameters

    found = discover(folder)
    for error in found.errors:
        console.print(f"[red]{error.origin}: {error.message}[/red]", soft_wrap=True)
    for name, spec in sorted(found.pipelines.items()):
        unused = unused_parameters(spec)
        if unused:
            console.print(
                f"[yellow]warning: pipeline {name}: parameters {unused} are declared but no step's "
                "config uses them[/yellow]",
                soft_wrap=True,
            )
    return found


def resolved_configs(spec: Any, parameters: dict[str, Any] | None = None) -> list[str]:
    """Each etl/el step's tool configs with its ``{param}`` filled from the defaults (secrets masked)."""
    from clinicflow.toolkit.base import ToolkitError
    from clinicflow.toolkit.compose import leaves
    from clinicflow.toolkit.templates import resolved

    values = {**spec.parameters, **(parameters or {})}
    lines: list[str] = []
    for leaf in leaves(spec.steps):
        for role, config in leaf.configs:
            try:
                shown = resolved(config, values, f"{leaf.name} {role}.")
            except ToolkitError as exc:
                lines.append(f"{leaf.name} {role}: {exc}")
                continue
            if hasattr(shown, "model_dump"):
                text = json.dumps(_shown_config(shown), default=str)
            else:
                text = f"a {type(shown).__name__} object"
            lines.append(f"{leaf.name} {role}: {text}")
    return lines


_CHOICE_FIELDS = ("kind", "style")  # the discriminators: which tool or pagination, even where it is the default


def _shown_config(model: Any) -> dict[str, Any]:
    """A config as its non-default fields, each nested config's choice (``style: cursor``) kept."""
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    choice = {name: getattr(model, name) for name in _CHOICE_FIELDS if hasattr(model, name)}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name in dumped and hasattr(value, "model_dump"):
            dumped[name] = _shown_config(value)
    return {**choice, **dumped}


def run_demo_pipelines(console: Console) -> None:
    """``make demo``: the two example pipelines on local defaults (demo API, analytics PostgreSQL, chDB in ./out)."""
    from datetime import timedelta

    from blocks.databases import PostgresServer
    from blocks.resolve import ANALYTICS_BLOCK, resolve_block
    from clinicflow_dev import demo_api
    from flows.pipeline import run_pipeline
    from flows.runtime import flow_run_settings

    with flow_run_settings():
        with demo_api.serve() as url:
            rows = run_pipeline(pipeline="referral-providers", parameters={"api_url": url})
        console.print(f"pipeline referral-providers: {rows[0]['rows_written']} providers in toolkit.referral_providers")
        with connected(resolve_block(ANALYTICS_BLOCK, PostgresServer)) as conn, conn.cursor() as cur:
            cur.execute(
                'SELECT min("ProcDate"), max("ProcDate") FROM raw.procedurelog WHERE "ProcDate" > DATE \'1900-01-01\''
            )
            first, last = cur.fetchone()
        if first is None:
            console.print("pipeline procedures-daily: raw.procedurelog is empty, nothing to aggregate")
            return
        # The demo's data spans years: one run over the whole range instead of one per day.
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        rows = run_pipeline(pipeline="procedures-daily", start=start, end=end)
        console.print(
            f"pipeline procedures-daily: {rows[0]['rows_written']} (day, clinic, provider) rows in "
            "ClickHouse procedures_daily (chDB in ./out/clickhouse)"
        )


@pipelines_app.command("list")
def pipelines_list_command(folder: FolderOption = None) -> None:
    """List discovered pipelines (and every module that failed to load)."""
    console = Console()
    found = _discover(folder, console)
    table = Table("name", "schedules", "timescope", "parameters", "module")
    for name, spec in sorted(found.pipelines.items()):
        table.add_row(
            name,
            _schedule_text(spec),
            str(spec.timescope.window) if spec.timescope else "-",
            ", ".join(spec.parameters) or "-",
            found.origins[name],
        )
    console.print(table)
    if found.errors:
        raise typer.Exit(EXIT_FAILED)


@pipelines_app.command("show")
def pipelines_show_command(name: str, folder: FolderOption = None) -> None:
    """Show one pipeline: schedules, time scope, parameters and its steps."""
    from clinicflow.toolkit.base import ToolkitError

    console = Console()
    found = _discover(folder, console)
    try:
        spec = found.get(name)
    except ToolkitError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    console.print(f"[bold]{spec.name}[/bold]  ({found.origins[name]})")
    if spec.description:
        console.print(spec.description)
    console.print(f"schedules: {_schedule_text(spec)}")
    console.print(f"timescope: {spec.timescope.window if spec.timescope else '-'}")
    console.print(f"parameters: {json.dumps(spec.parameters, default=str)}")
    console.print("\n".join(_tree(spec.steps)))
    configs = resolved_configs(spec)
    if configs:
        console.print("configuration (parameters filled with their defaults):")
        for line in configs:
            console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)


@pipelines_app.command("schema")
def pipelines_schema_command(
    kind: Annotated[
        str | None, typer.Argument(help="One config: a kind (http, file, ...), ROLE.KIND (load.file) or a model name.")
    ] = None,
) -> None:
    """Print the configuration reference (every tool config's fields), generated from the config models."""
    from clinicflow.toolkit.reference import kinds, reference

    text = reference(kind)
    if not text.strip():
        typer.echo(f"no config of kind {kind!r}; known: {', '.join(kinds())}", err=True)
        raise typer.Exit(EXIT_CANNOT_RUN)
    typer.echo(text, nl=False)


@pipelines_app.command("run")
def pipelines_run_command(
    name: str,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="NAME=VALUE, repeatable (JSON values accepted).")
    ] = None,
    start: Annotated[datetime | None, typer.Option(help="Time scope start (UTC unless given).")] = None,
    end: Annotated[datetime | None, typer.Option(help="Time scope end (UTC unless given).")] = None,
    folder: FolderOption = None,
) -> None:
    """Run a pipeline now, in this process (Prefect API if configured, else the embedded server)."""
    from clinicflow.toolkit.base import ToolkitError
    from clinicflow.toolkit.discovery import discover
    from flows.pipeline import PipelineFailed, run_pipeline
    from flows.runtime import flow_run_settings

    console = Console()
    params = parse_params(param or [])
    try:
        # A name or a parameter the pipeline does not have is said before any server starts or flow run is made.
        discover(folder).get(name).merged_parameters(params)
        with flow_run_settings():
            rows = run_pipeline(
                pipeline=name,
                parameters=params,
                start=_utc(start) if start else None,
                end=_utc(end) if end else None,
                folder=folder,
            )
    except PipelineFailed as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    except ToolkitError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    for row in rows:
        console.print(
            f"{row['step']}: {row['status']}"
            + (f", {row['rows_written']} rows written" if row["rows_written"] is not None else "")
        )


@pipelines_app.command("sync")
def pipelines_sync_command(
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete managed deployments whose pipeline is no longer in code.")
    ] = False,
    work_pool: Annotated[
        str | None, typer.Option("--work-pool", help="Work pool (default: $CLINICFLOW_WORK_POOL or clinicflow-k8s).")
    ] = None,
    image_folder: Annotated[
        str | None,
        typer.Option(
            "--image-folder",
            help="Pipelines folder inside the image, for pools that run an image "
            "(default /app/pipelines); a process pool uses --folder.",
        ),
    ] = None,
    folder: FolderOption = None,
) -> None:
    """Create/update one Prefect deployment per pipeline; exit 1 when a module failed to import.

    The modules that import are synced; a broken module's deployment is left as it was and nothing is
    pruned while discovery reports errors. A process pool's deployments run this checkout and this
    folder; other pools run the image's /app.
    """
    from clinicflow.toolkit.base import ToolkitError
    from flows.pipeline_registry import sync_pipelines

    console = Console()
    found = _discover(folder, console)
    if found.errors and prune:
        console.print("[yellow]--prune skipped: a module failed to import, so its deployment is kept[/yellow]")
    try:
        report = asyncio.run(
            sync_pipelines(
                found.pipelines,
                work_pool=work_pool,
                prune=prune and not found.errors,
                folder=folder,
                image_folder=image_folder,
            )
        )
    except ToolkitError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    console.print(
        f"created: {', '.join(report.created) or '-'}; updated: {', '.join(report.updated) or '-'}; "
        f"pruned: {', '.join(report.pruned) or '-'}"
    )
    if found.errors:
        console.print(f"[red]{len(found.errors)} module(s) not synced: fix the modules above[/red]")
        raise typer.Exit(EXIT_FAILED)


@pipelines_app.command("backfill")
def pipelines_backfill_command(
    name: str,
    from_: Annotated[datetime, typer.Option("--from", help="First window starts here (UTC unless given).")],
    to: Annotated[datetime, typer.Option("--to", help="Last window ends here (exclusive).")],
    folder: FolderOption = None,
) -> None:
    """Create one flow run of the pipeline's deployment per time-scope window in [--from, --to)."""
    from clinicflow.toolkit.base import ToolkitError
    from flows.pipeline_registry import backfill

    console = Console()
    found = _discover(folder, console)
    try:
        ids = asyncio.run(backfill(found.get(name), _utc(from_), _utc(to)))
    except ToolkitError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    console.print(f"{len(ids)} flow runs created for {name}")
