"""CLI: ``clinicflow serve``: the data-processing API and results page (uvicorn).

Exit codes: 0 stopped normally; 2 the service cannot start (no API token,
unresolvable database or bucket block).
"""

from __future__ import annotations

import typer

EXIT_CANNOT_START = 2


def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Uvicorn worker processes."),
) -> None:
    """Serve the data-processing API (/api/etl/...), the WebSocket /ws and the results page /ui/."""
    import uvicorn

    from clinicflow.service.app import create_app
    from clinicflow.service.settings import settings_from_env

    try:
        settings = settings_from_env()
    except Exception as exc:  # noqa: BLE001 - resolver messages never hold secrets
        typer.echo(f"cannot start: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(EXIT_CANNOT_START) from None
    from clinicflow.processing import sandbox

    mode = sandbox.active_mode()
    typer.echo(
        f"clinicflow data-processing service on http://{host}:{port}/ui/ "
        f"(database {settings.database.describe()}); custom script sandbox: {mode} "
        f"({sandbox.describe_mode(mode)})"
    )
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    else:
        # Not uvicorn's own workers: their children would not get the secrets kept out of the environment.
        from clinicflow.service.workers import serve_workers

        raise typer.Exit(serve_workers(host, port, workers))
