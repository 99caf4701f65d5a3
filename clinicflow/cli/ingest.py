"""CLI: ``clinicflow ingest run PATTERN`` and ``clinicflow dlq list|show|replay|discard``.

``ingest run`` runs flow ``ingest_files`` in-process (with or without a
Prefect API; blocks from the resolver) and exits 1 when the flow ends
Failed. ``dlq`` reads and resolves ``<schema>.dead_letters``; ``replay``
runs flow ``replay_dead_letters``. Nothing here prints document content
unless ``dlq show --payload`` is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clinicflow.cli.options_cli import model_options
from clinicflow.connectors.connections import connected
from clinicflow.ingest.options import IngestFanOut, IngestRunOptions, ReextractOptions, ReplayOptions

ingest_app = typer.Typer(help="File ingestion: wildcard → staged documents → Medical rows.", no_args_is_help=True)
dlq_app = typer.Typer(help="The ingestion dead-letter queue.", no_args_is_help=True)

INGEST_DEMO_FILES = Path("./out/ingest-demo-files")
_DB_HELP = "PostgresServer block of the ingestion database."
# The blocks package owns the name; importing it would load Prefect before any command runs.
_DB_BLOCK = "analytics-postgres"


def _print_result(console: Console, title: str, result: dict[str, Any], key_header: str = "metric") -> None:
    table = Table(title=title)
    table.add_column(key_header)
    table.add_column("value", justify="right", overflow="fold")
    for key, value in result.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


def _run(console: Console, flow: Any, title: str, **parameters: Any) -> None:
    from flows.runtime import flow_run_settings

    with flow_run_settings():
        state = flow(**parameters, return_state=True)
    if state.is_failed():
        console.print(f"[red]{flow.name} failed: {state.message}[/red]")
        raise typer.Exit(1)
    result = state.result()
    _print_result(console, title, result)
    if isinstance(result, dict) and result.get("listed") == 0:
        # A typo in the pattern looks like a quiet inbox: say it, without failing the nightly run of an empty one.
        console.print(f"[yellow]nothing matched {parameters.get('pattern', '')!r}[/yellow]", highlight=False)


@ingest_app.command("run")
@model_options(
    IngestRunOptions,
    IngestFanOut,
    defaults={"database_block": _DB_BLOCK},
    exclude=frozenset({"inline_binary_kb", "run_key"}),
    names={"ingest_schema": "schema"},
    help={
        "mode": "in-pod | fanout (child runs of ingest-files-prefix on the work pool; "
        "needs PREFECT_API_URL, docs/scale-out.md).",
        "partitions": "fanout: about this many prefix partitions.",
    },
)
def ingest_run_command(
    pattern: str = typer.Argument(
        ..., help="s3://bucket/a/**/*.txt, gs://…, a local path with wildcards, or synthetic://events?count=1000"
    ),
    **values: Any,
) -> None:
    """Run the ingestion (exit 1 if the flow fails)."""
    from clinicflow.cli.fanout import require_api_for_fanout
    from flows.ingest_files import ingest_files

    console = Console(stderr=True)
    require_api_for_fanout(values["mode"], console)
    _run(console, ingest_files, f"ingest {pattern}", pattern=pattern, **values)


@ingest_app.command("reextract")
@model_options(ReextractOptions, defaults={"database_block": _DB_BLOCK}, names={"ingest_schema": "schema"})
def ingest_reextract_command(**values: Any) -> None:
    """Extract staged documents again with another extractor (one row per document version; exit 1 if some
    documents were dead-lettered)."""
    from flows.ingest_files import reextract_documents

    _run(Console(stderr=True), reextract_documents, f"reextract ({values['extractor']})", **values)


@ingest_app.command("demo")
def ingest_demo_command(
    files_dir: Annotated[Path, typer.Option(help="Where the demo documents are written.")] = INGEST_DEMO_FILES,
    database_block: str = typer.Option("analytics-postgres", help=_DB_HELP),
) -> None:
    """Write a few made-up clinical documents and ingest them with the offline rules extractor."""
    from blocks.databases import PostgresServer
    from blocks.resolve import resolve_block
    from clinicflow_dev.dicom_demo import ensure_database
    from clinicflow_dev.ingest_demo import DEMO_PATTERN, write_demo_files
    from flows.ingest_files import ingest_files

    console = Console(stderr=True)
    ensure_database(resolve_block(database_block, PostgresServer))
    count = write_demo_files(files_dir)
    console.print(f"{count} demo documents in {files_dir}")
    # One of them is not a clinical document on purpose: 1 dead letter of 8 new documents is within 0.25.
    _run(
        console,
        ingest_files,
        "ingest demo",
        pattern=str(files_dir.resolve() / DEMO_PATTERN),
        batch_size=10,
        max_error_rate=0.25,
        extractor="rules",
        database_block=database_block,
    )
    console.print("see the rows with: SELECT * FROM ingest.medical; and the dead letters with `clinicflow dlq list`")


def _database(database_block: str) -> Any:
    from blocks.databases import PostgresServer
    from blocks.resolve import resolve_block

    return resolve_block(database_block, PostgresServer)


@dlq_app.command("list")
def dlq_list_command(
    status: str = typer.Option("open", help="open | replayed | discarded | all"),
    stage: str | None = typer.Option(None, help="read | stage | extract | load"),
    reason: str | None = typer.Option(None, help="Reason code, e.g. too-large, malformed-output."),
    run_id: str | None = typer.Option(None, help="Only letters of this run."),
    limit: int = typer.Option(50, help="Newest first, at most this many."),
    database_block: str = typer.Option("analytics-postgres", help=_DB_HELP),
    schema: str = typer.Option("ingest", help="Schema of the ingestion tables."),
) -> None:
    """List dead letters (uri / record id, stage, reason; never content) and counts by status."""
    from clinicflow.ingest.deadletter import count_letters, list_letters

    # An unknown choice listed nothing and exited 0, as if there were no such letters.
    if status not in ("open", "replayed", "discarded", "all"):
        raise typer.BadParameter(f"{status!r}: one of open, replayed, discarded, all", param_hint="--status")
    if stage is not None and stage not in ("read", "stage", "extract", "load"):
        raise typer.BadParameter(f"{stage!r}: one of read, stage, extract, load", param_hint="--stage")

    with connected(_database(database_block)) as conn:
        letters = list_letters(
            conn,
            schema,
            status=None if status == "all" else status,
            stage=stage,
            reason=reason,
            run_id=run_id,
            limit=limit,
        )
        counts = count_letters(conn, schema)
    headers = ("id", "stage", "item", "reason", "attempts", "status", "last failed")
    rows = [
        (
            str(letter["id"]),
            letter["stage"],
            letter["source_uri"] or letter["item_key"],
            letter["reason"],
            str(letter["attempts"]),
            letter["status"],
            str(letter["last_failed_at"])[:19],
        )
        for letter in letters
    ]
    console = Console()
    if console.is_terminal:
        table = Table(title=f"dead letters ({status})")
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:  # piped or redirected: a line a letter, tab-separated, a uri whole (for grep, cut, a script)
        for row in (headers, *rows):
            print("\t".join(row))
    console.print(", ".join(f"{s}/{st}/{r}: {n}" for (s, st, r), n in counts.items()) or "no dead letters")


@dlq_app.command("show")
def dlq_show_command(
    letter_id: int = typer.Argument(..., help="Dead letter id."),
    payload: bool = typer.Option(False, "--payload", help="Also print the payload (may hold document content)."),
    database_block: str = typer.Option("analytics-postgres", help=_DB_HELP),
    schema: str = typer.Option("ingest", help="Schema of the ingestion tables."),
) -> None:
    """Show one dead letter."""
    from clinicflow.ingest.deadletter import get_letter

    with connected(_database(database_block)) as conn:
        letter = get_letter(conn, schema, letter_id)
    if letter is None:
        Console(stderr=True).print(f"[red]no dead letter {letter_id} in {schema}.dead_letters[/red]")
        raise typer.Exit(1)
    body = letter.pop("payload")
    if payload:
        letter["payload"] = body
    else:
        letter["payload"] = "(hidden: --payload to show)" if body is not None else None
    _print_result(Console(), f"dead letter {letter_id}", {k: str(v) for k, v in letter.items()}, "field")


@dlq_app.command("replay")
@model_options(
    ReplayOptions,
    defaults={"database_block": _DB_BLOCK},
    exclude=frozenset({"ids", "seed", "max_file_mb"}),
    names={"ingest_schema": "schema"},
)
def dlq_replay_command(
    ids: Annotated[list[int] | None, typer.Argument(help="Letter ids (default: every open letter matching).")] = None,
    **values: Any,
) -> None:
    """Replay open letters; a success is marked replayed (exit 1 if some fail again)."""
    from flows.ingest_files import replay_dead_letters

    _run(Console(stderr=True), replay_dead_letters, "dead-letter replay", ids=list(ids) if ids else None, **values)


@dlq_app.command("discard")
def dlq_discard_command(
    ids: Annotated[list[int], typer.Argument(help="Letter ids to discard.")],
    database_block: str = typer.Option("analytics-postgres", help=_DB_HELP),
    schema: str = typer.Option("ingest", help="Schema of the ingestion tables."),
) -> None:
    """Mark open letters discarded (kept, never replayed)."""
    from clinicflow.ingest.deadletter import discard_letters

    with connected(_database(database_block)) as conn:
        changed = discard_letters(conn, schema, list(ids))
    Console().print(f"discarded {changed} of {len(ids)} letter(s)")
    if changed < len(ids):
        raise typer.Exit(1)
