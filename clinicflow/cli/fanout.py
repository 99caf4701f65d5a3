"""CLI: ``clinicflow fanout setup [--slots N] [--name NAME]``: the global concurrency limit of fan-out children.

Children of a fanned-out run (deployment ``nightly-tables``) each hold one slot
of this limit while they work; per clinic, give each parameter set its own
limit name (docs/scale-out.md). Idempotent: creates the limit or sets its size.
"""
from __future__ import annotations

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


fanout_app = typer.Typer(help="Fan-out of the nightly across the work pool (docs/scale-out.md).", no_args_is_help=True)


@fanout_app.command("setup")
def fanout_setup_command(
    slots: int = typer.Option(4, "--slots", help="Child runs working at the same time."),
    name: str = typer.Option("clinicflow-fanout", "--name", help="Global concurrency limit name."),
) -> None:
    """Create (or resize) the global concurrency limit that throttles fan-out child runs."""
    from blocks.setup import BlockSetupError, require_api

    try:
        api = require_api()
    except BlockSetupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    action = ensure_concurrency_limit(name, slots)
    typer.echo(f"global concurrency limit {name!r} ({slots} slots) {action} on {api}")
