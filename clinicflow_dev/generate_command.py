"""CLI: ``generate-opendental``, an OpenDental-shaped database for the demo, tests and benches.

The server is the ``opendental-source`` block (resolver: Prefect block or env
vars); ``--database`` replaces its database name, and the database is created
(utf8mb3) when missing. A database that already holds tables is refused unless
``--replace`` is given (then the whole database is dropped and made anew, so no
table of an earlier run lingers): the source block of a real practice must never
be overwritten by accident.

Exit codes: 0 done; 1 bad arguments or a database that already holds tables;
2 the server could not be reached.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

EXIT_REFUSED = 1
EXIT_SERVER_ERROR = 2


def _target_server(database: str | None) -> Any:
    from blocks.databases import MySQLServer
    from blocks.resolve import SOURCE_BLOCK, resolve_block

    server = resolve_block(SOURCE_BLOCK, MySQLServer)
    return server.model_copy(update={"database": database}) if database else server


def existing_tables(server: Any) -> int | None:
    """How many tables ``server.database`` holds; None when the database does not exist."""
    conn = server.connect(database="")  # "" = no default database (None means the block's)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (server.database,))
            if not cur.fetchone()[0]:
                return None
            cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (server.database,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def create_database(server: Any, *, replace: bool = False) -> None:
    """Create ``server.database`` (utf8mb3, like OpenDental's); ``replace`` drops it first."""
    from clinicflow.core.sql import quote_ident

    name = quote_ident(server.database, "mysql")
    conn = server.connect(database="", autocommit=True)
    try:
        with conn.cursor() as cur:
            if replace:
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {name} CHARACTER SET utf8mb3")
    finally:
        conn.close()


def generate_opendental_command(
    database: str | None = typer.Option(
        None, "--database", help="Database to fill (default: the opendental-source block's); created when missing."
    ),
    scale: float = typer.Option(
        1.0,
        "--scale",
        min=0.0,
        help="Multiplier for the default row counts (1.0 ≈ 35,000 rows; tiny lookup tables keep their size).",
    ),
    filler_tables: int = typer.Option(
        0,
        "--filler-tables",
        min=0,
        help="Extra tiny OpenDental-named tables (428 plus the 21 core tables and edgecase make a 450-table source).",
    ),
    procedurelog_rows: int | None = typer.Option(
        None, "--procedurelog-rows", min=0, help="Rows in procedurelog (made server-side; 1,000,000 takes seconds)."
    ),
    seed_value: int = typer.Option(42, "--seed", help="Seed: the same seed gives the same data."),
    edge_cases: bool = typer.Option(
        True,
        "--edge-cases/--no-edge-cases",
        help="Add the `edgecase` table of value classes the copy paths must keep byte-exact.",
    ),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="Allow a database that already holds tables: drop the whole database and generate it anew.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print rows per table as JSON."),
) -> None:
    """Create and fill an OpenDental-shaped MariaDB/MySQL database (deterministic for a given --seed)."""
    from clinicflow_dev import generator

    console = Console(stderr=as_json)
    server = None
    try:
        server = _target_server(database)
        tables = existing_tables(server)
    except Exception as exc:  # noqa: BLE001 - reported without secrets (describe() has no password), exit 2
        where = server.describe() if server is not None else "the opendental-source server"
        console.print(f"[red]cannot reach {where}: {type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(EXIT_SERVER_ERROR) from None
    if tables and not replace:
        console.print(
            f"[red]{server.describe()} already holds {tables} table(s); generating would replace "
            f"them. Use another --database, or --replace to drop the database and make it anew.[/red]"
        )
        raise typer.Exit(EXIT_REFUSED)
    started = time.perf_counter()
    try:
        if tables is None or replace:
            create_database(server, replace=bool(tables))
        counts = generator.seed(
            server, scale=scale, seed=seed_value, filler_tables=filler_tables, edge_cases=edge_cases
        )
        if procedurelog_rows is not None:
            counts["procedurelog"] = generator.create_procedurelog_like(server, procedurelog_rows, seed=seed_value)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_REFUSED) from None
    except Exception as exc:  # noqa: BLE001 - reported without secrets (describe() has no password), exit 2
        console.print(f"[red]generating into {server.describe()} failed: {type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(EXIT_SERVER_ERROR) from None
    elapsed = time.perf_counter() - started
    if as_json:
        typer.echo(json.dumps({"database": server.describe(), "seconds": round(elapsed, 2), "rows": counts}, indent=2))
        return
    table = Table(title=f"{len(counts)} tables in {server.describe()}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:25]:
        table.add_row(name, f"{rows:,}")
    console.print(table)
    if len(counts) > 25:
        console.print(f"... and {len(counts) - 25} more tiny tables")
    console.print(f"{sum(counts.values()):,} rows in {len(counts)} tables, {elapsed:.1f} s")
