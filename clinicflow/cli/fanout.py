"""CLI: ``clinicflow fanout setup [--slots N] [--name NAME]``: the global concurrency limit of fan-out children.

Children of a fanned-out run (deployment ``nightly-tables``) each hold one slot
of this limit while they work; per clinic, give each parameter set its own
limit name (docs/scale-out.md). Idempotent: creates the limit or sets its size.
"""

from __future__ import annotations

import contextlib
from typing import Any

import typer


def ensure_concurrency_limit(name: str, slots: int) -> str:
    """Create the global concurrency limit ``name`` with ``slots`` slots, or resize it.

    Returns 'created', 'updated' or 'unchanged'.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    if slots < 1:
        raise ValueError(f"fan-out concurrency limit {name!r}: slots must be at least 1, got {slots}")
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots, active=True))
            return "created"
        if existing.limit == slots and existing.active:
            return "unchanged"
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=slots, active=True))
        return "updated"


def require_api_for_fanout(mode: str, console: Any) -> None:
    """``--mode fanout`` from a terminal: the parent runs here and its children on the configured server's
    workers, so a Prefect API must be configured (exit 2 otherwise; the embedded server has no workers)."""
    from prefect.settings import PREFECT_API_URL

    if mode not in ("in-pod", "fanout"):
        console.print(f"[red]--mode must be in-pod or fanout, not {mode!r}[/red]")
        raise typer.Exit(2)
    if mode == "fanout" and not PREFECT_API_URL.value():
        console.print(
            "[red]--mode fanout needs a Prefect server with workers: set PREFECT_API_URL "
            "(docs/scale-out.md, the local recipe)[/red]"
        )
        raise typer.Exit(2)


# The child deployments of every fan-out parent: (deployment name, entrypoint).
CHILD_DEPLOYMENTS = (
    ("nightly-tables", "flows/nightly_fanout.py:nightly_tables"),
    ("dicom-reports-range", "flows/dicom_reports.py:dicom_reports_range"),
    ("ingest-files-prefix", "flows/ingest_files.py:ingest_files_prefix"),
)


def deploy_children_on_process_pool(pool: str) -> list[str]:
    """Create the process pool if missing and (re)create every child deployment on it, running this checkout.

    The local recipe (docs/scale-out.md): N ``prefect worker start --pool POOL --type process --limit 1``
    run the children; the parent runs in the ``clinicflow ... --mode fanout`` process, holding no worker slot.

    Each child deployment names its command, this checkout's interpreter running ``prefect.engine``: a process
    worker then starts the engine directly (which runs the pull step and imports the entrypoint itself).
    Without a command, Prefect 3.9's process worker first starts a workspace supervisor, a second interpreter
    that imports Prefect only to prepare the working directory and then replaces itself with the engine:
    about as much CPU again as the engine's own start, for every child.
    """
    import asyncio
    import sys

    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.processutils import command_to_string

    from flows.pipeline_registry import CHECKOUT_ROOT, code_location

    engine_command = command_to_string([sys.executable, "-m", "prefect.engine"])

    async def go() -> list[str]:
        where = code_location("process", None)
        async with get_client() as client:
            try:
                found = await client.read_work_pool(pool)
                if found.type != "process":
                    raise ValueError(f"work pool {pool!r} is a {found.type} pool, not a process pool")
            except ObjectNotFound:
                with contextlib.suppress(ObjectAlreadyExists):
                    await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            made = []
            for name, entrypoint in CHILD_DEPLOYMENTS:
                child: Any = load_flow_from_entrypoint(str(CHECKOUT_ROOT / entrypoint))
                flow_id = await client.create_flow_from_name(child.name)
                await client.create_deployment(
                    flow_id=flow_id,
                    name=name,
                    entrypoint=entrypoint,
                    work_pool_name=pool,
                    pull_steps=where.pull_steps,
                    job_variables={"working_dir": str(CHECKOUT_ROOT), "command": engine_command},
                    parameter_openapi_schema=parameter_schema(child).model_dump_for_openapi(),
                    tags=["clinicflow-fanout-child"],
                )
                made.append(f"{child.name}/{name}")
            return made

    return asyncio.run(go())


fanout_app = typer.Typer(
    help="Fan-out of the nightly, DICOM and ingestion runs across the work pool (docs/scale-out.md).",
    no_args_is_help=True,
)


@fanout_app.command("setup")
def fanout_setup_command(
    slots: int = typer.Option(4, "--slots", help="Child runs working at the same time."),
    name: str = typer.Option("clinicflow-fanout", "--name", help="Global concurrency limit name."),
    process_pool: str | None = typer.Option(
        None,
        "--process-pool",
        help="Also create this process work pool and the child deployments on it, "
        "running this checkout (the local recipe).",
    ),
) -> None:
    """Create (or resize) the global concurrency limit that throttles fan-out child runs.

    With --process-pool: the local recipe's pool and child deployments too (docs/scale-out.md).
    """
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if not api:
        typer.echo(
            "PREFECT_API_URL is not set: the concurrency limit (and the pool) live on a Prefect server; fan-out runs "
            "child deployment runs there (docs/scale-out.md)",
            err=True,
        )
        raise typer.Exit(1)
    action = ensure_concurrency_limit(name, slots)
    typer.echo(f"global concurrency limit {name!r} ({slots} slots) {action} on {api}")
    if process_pool:
        try:
            made = deploy_children_on_process_pool(process_pool)
        except ValueError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        typer.echo(f"process pool {process_pool!r}: child deployments {', '.join(made)}")
