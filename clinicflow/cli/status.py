"""CLI: ``clinicflow status``: the latest runs of every subsystem, as tables or ``--json``.

Subsystems: ``nightly`` (OpenDental nightly and load runs, ``clinicflow.etl_runs``),
``ingest`` (``ingest.runs`` and the open dead letters by reason), ``processing``
(``processing.results`` by status), ``dicom`` (runs by dataset from the DICOM
state tables in the reports database), ``pipelines`` (the last run of each
pipeline) and ``fanout`` (the partitions of the last fanned-out parent), the
last two from the Prefect API when one is configured, and ``cdc`` (the binlog CDC's
lag per source, from the replica's CDC state).

Exit codes: 0 no subsystem's latest run failed; 1 the latest run of a subsystem
(of those ``--subsystem`` names) failed, including a nightly run that failed
before its first table or is still marked running after it stopped (a killed
run); 2 nothing recorded yet, or the analytics database cannot be read.
"""
from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinicflow.core.dbapi import PgConnection, PgCursor, column_names

EXIT_LAST_FAILED = 1
EXIT_NO_DATA = 2
SUBSYSTEMS = ("nightly", "ingest", "processing", "dicom", "pipelines", "fanout", "cdc")
INGEST_FLOW = "ingest-files"


def _exists(cur: PgCursor, relation: str) -> bool:
    cur.execute("SELECT to_regclass(%s)", (relation,))
    return cur.fetchone()[0] is not None


def _rows(cur: PgCursor, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cur.execute(sql, params)
    names = column_names(cur)
    return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]


def nightly_status(conn: PgConnection, limit: int) -> dict[str, Any]:
    from clinicflow.opendental import metrics

    runs = metrics.last_runs(conn, limit)
    out = [{"run_id": r.run_id, "flow": r.flow_name, "started_at": r.started_at, "finished_at": r.finished_at,
            "status": r.status, "tables": r.tables_total, "tables_failed": r.tables_failed, "rows": r.rows_loaded,
            "failed_tables": list(r.failed_tables), "message": r.message} for r in runs]
    return {"runs": out, "failed": bool(out) and out[0]["status"] != "ok"}


def ingest_status(conn: PgConnection, limit: int, schema: str = "ingest") -> dict[str, Any]:
    from clinicflow.core.sql import quote_ident

    s = quote_ident(schema, "postgres")
    with conn.cursor() as cur:
        runs = (_rows(cur, f"SELECT run_id, pattern, mode, started_at, finished_at, status, counts, message "
                           f"FROM {s}.runs ORDER BY started_at DESC LIMIT %s", (limit,))
                if _exists(cur, f"{s}.runs") else [])
        letters = (_rows(cur, f"SELECT stage, reason, count(*) AS open FROM {s}.dead_letters WHERE status = 'open' "
                              "GROUP BY stage, reason ORDER BY count(*) DESC, stage, reason")
                   if _exists(cur, f"{s}.dead_letters") else [])
    conn.rollback()
    return {"runs": runs, "open_dead_letters": letters, "failed": bool(runs) and runs[0]["status"] == "failed"}


def processing_status(conn: PgConnection, limit: int) -> dict[str, Any]:
    with conn.cursor() as cur:
        if not _exists(cur, "processing.results"):
            conn.rollback()
            return {"jobs_by_status": {}, "jobs": [], "failed": False}
        counts = {r["status"]: r["n"] for r in _rows(
            cur, "SELECT status, count(*) AS n FROM processing.results GROUP BY status ORDER BY status")}
        jobs = _rows(cur, "SELECT id, processing_type, status, left(error, 300) AS error, created_at, finished_at "
                          "FROM processing.results ORDER BY id DESC LIMIT %s", (limit,))
    conn.rollback()
    finished = [j for j in jobs if j["status"] not in ("PENDING", "PROCESSING")]
    return {"jobs_by_status": counts, "jobs": jobs,
            "failed": bool(finished) and finished[0]["status"] in ("FAILED", "CRASHED")}


def dicom_status(conn: PgConnection, limit: int, schema: str = "clinicflow_dicom") -> dict[str, Any]:
    from clinicflow.core.sql import quote_ident

    s = quote_ident(schema, "postgres")
    with conn.cursor() as cur:
        if not _exists(cur, f"{s}.files"):
            conn.rollback()
            return {"runs": [], "failed": False}
        # A DICOM run is (dataset, run id): its files seen and its failures, by last activity.
        runs = _rows(cur, f"""
            WITH seen AS (SELECT dataset, seen_run AS run_id, max(updated_at) AS at,
                                 count(*) FILTER (WHERE status = 'done') AS files_done
                          FROM {s}.files WHERE seen_run IS NOT NULL GROUP BY 1, 2),
                 failed AS (SELECT dataset, run_id, max(recorded_at) AS at, count(*) AS failures
                            FROM {s}.failures GROUP BY 1, 2)
            SELECT coalesce(seen.dataset, failed.dataset) AS dataset, coalesce(seen.run_id, failed.run_id) AS run_id,
                   greatest(seen.at, failed.at) AS last_activity, coalesce(files_done, 0) AS files_done,
                   coalesce(failures, 0) AS failures
            FROM seen FULL JOIN failed ON seen.dataset = failed.dataset AND seen.run_id = failed.run_id
            ORDER BY 3 DESC LIMIT %s""", (limit,))
    conn.rollback()
    return {"runs": runs, "failed": bool(runs) and runs[0]["failures"] > 0}


def prefect_status(limit: int) -> dict[str, dict[str, Any]]:
    """Pipelines' last runs and the last fan-out parent's partitions, from the Prefect API (when configured)."""
    import asyncio

    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        why = "no Prefect API configured (PREFECT_API_URL)"
        return {"pipelines": {"unavailable": why, "failed": False}, "fanout": {"unavailable": why, "failed": False}}

    async def read() -> dict[str, dict[str, Any]]:
        from prefect import get_client
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags
        from prefect.client.schemas.sorting import FlowRunSort

        from flows.fanout_runner import FANOUT_TAG
        from flows.pipeline import PIPELINE_FLOW_NAME

        async with get_client() as client:
            pipeline_runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[PIPELINE_FLOW_NAME])),
                sort=FlowRunSort.START_TIME_DESC, limit=200)
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[FANOUT_TAG])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=1)
            partitions: list[Any] = []
            run_tag = next((t for t in children[0].tags if t.startswith("fanout-run:")), None) if children else None
            if run_tag:
                partitions = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[run_tag])),
                    sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=500)
        last: dict[str, Any] = {}
        for run in pipeline_runs:
            name = str(run.parameters.get("pipeline") or run.name)
            if name not in last and run.state is not None and run.state.is_final():
                last[name] = run
        pipelines = [{"pipeline": name, "state": r.state.name, "started_at": r.start_time, "flow_run_id": str(r.id),
                      "message": (r.state.message or "")[:300]} for name, r in sorted(last.items())][:limit * 10]
        parts = [{"partition": r.name, "state": r.state.name if r.state else "", "started_at": r.start_time,
                  "ended_at": r.end_time, "flow_run_id": str(r.id)} for r in partitions]
        return {"pipelines": {"runs": pipelines,
                              "failed": any(p["state"] in ("Failed", "Crashed") for p in pipelines)},
                "fanout": {"run_key": run_tag.partition(":")[2] if run_tag else None, "partitions": parts,
                           "failed": any(p["state"] in ("Failed", "Crashed") for p in parts)}}

    try:
        return asyncio.run(read())
    except Exception as exc:  # noqa: BLE001 - the API being down is a status line, not a crash
        why = f"Prefect API unreachable: {type(exc).__name__}"
        return {"pipelines": {"unavailable": why, "failed": False}, "fanout": {"unavailable": why, "failed": False}}


def collect(subsystems: list[str], limit: int) -> dict[str, Any]:
    """Every asked-for subsystem's section; raises on the analytics database only (exit 2)."""
    from blocks.databases import PostgresServer
    from blocks.resolve import ANALYTICS_BLOCK, DICOM_REPORTS_BLOCK, resolve_block

    report: dict[str, Any] = {}
    if {"nightly", "ingest", "processing"} & set(subsystems):
        conn = resolve_block(ANALYTICS_BLOCK, PostgresServer).connect()
        try:
            if "nightly" in subsystems:
                report["nightly"] = nightly_status(conn, limit)
            if "ingest" in subsystems:
                report["ingest"] = ingest_status(conn, limit)
            if "processing" in subsystems:
                report["processing"] = processing_status(conn, limit)
        finally:
            conn.close()
    if "cdc" in subsystems:
        from clinicflow.cli.cdc import cdc_status_section

        report["cdc"] = cdc_status_section()
    if "dicom" in subsystems:
        try:
            conn = resolve_block(DICOM_REPORTS_BLOCK, PostgresServer).connect()
            try:
                report["dicom"] = dicom_status(conn, limit)
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - another database: its absence is a line, not exit 2
            report["dicom"] = {"unavailable": f"cannot read the DICOM state database: {type(exc).__name__}",
                               "failed": False}
    if {"pipelines", "fanout"} & set(subsystems):
        report.update({k: v for k, v in prefect_status(limit).items() if k in subsystems})
    return report


def _nightly_table(section: dict[str, Any]) -> Table:
    table = Table(title=f"nightly: last {len(section['runs'])} runs")
    for header in ("started", "flow", "status", "tables", "failed", "rows", "seconds", "failed tables", "run"):
        table.add_column(header, overflow="fold")
    for run in section["runs"]:
        seconds = (run["finished_at"] - run["started_at"]).total_seconds() if run["finished_at"] else None
        style = {"ok": "green", "failed": "red"}.get(run["status"], "yellow")
        table.add_row(run["started_at"].strftime("%Y-%m-%d %H:%M:%S"), run["flow"],
                      f"[{style}]{run['status']}[/{style}]", str(run["tables"]), str(run["tables_failed"]),
                      str(run["rows"]), f"{seconds:.1f}" if seconds is not None else "",
                      ", ".join(run["failed_tables"]), run["run_id"])
    return table


def _simple_table(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else escape(str(row[c]))[:200] for c in columns))
    return table


def _print(console: Console, report: dict[str, Any]) -> None:
    for name, section in report.items():
        if "unavailable" in section:
            console.print(f"{name}: {section['unavailable']}", highlight=False)
        elif name == "nightly" and section["runs"]:
            console.print(_nightly_table(section))
        elif name == "ingest" and (section["runs"] or section["open_dead_letters"]):
            console.print(_simple_table("ingestion runs", section["runs"],
                                        ("started_at", "status", "mode", "pattern", "message", "run_id")))
            if section["open_dead_letters"]:
                console.print(_simple_table("open ingestion dead letters", section["open_dead_letters"],
                                            ("stage", "reason", "open")))
        elif name == "processing" and section["jobs"]:
            counts = ", ".join(f"{k} {v}" for k, v in section["jobs_by_status"].items())
            console.print(_simple_table(f"processing jobs ({counts})", section["jobs"],
                                        ("id", "processing_type", "status", "error", "created_at")))
        elif name == "dicom" and section["runs"]:
            console.print(_simple_table("DICOM runs", section["runs"],
                                        ("last_activity", "dataset", "files_done", "failures", "run_id")))
        elif name == "pipelines" and section["runs"]:
            console.print(_simple_table("pipelines: last run of each", section["runs"],
                                        ("pipeline", "state", "started_at", "message")))
        elif name == "cdc" and section["sources"]:
            console.print(_simple_table("CDC (binlog) lag per source", section["sources"],
                                        ("source", "status", "position", "events behind", "seconds behind",
                                         "failed tables", "message")))
        elif name == "fanout" and section["partitions"]:
            console.print(_simple_table(f"fan-out partitions of run {section['run_key']}", section["partitions"],
                                        ("partition", "state", "started_at", "ended_at")))


def _recorded(report: dict[str, Any]) -> bool:
    keys = ("runs", "jobs", "partitions", "open_dead_letters", "sources")
    return any(section.get(k) for section in report.values() for k in keys)


def status_command(
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many runs to show per subsystem."),
    run_id: str | None = typer.Option(None, "--run", help="Show the per-table metrics of this nightly run."),
    subsystem: list[str] | None = typer.Option(
        None, "--subsystem", "-s",
        help="Only these (repeatable): nightly, ingest, processing, dicom, pipelines, fanout, cdc."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document (for monitoring)."),
) -> None:
    """Show the latest runs of every subsystem; exit 1 if the latest run of one of them failed."""
    from blocks.databases import PostgresServer
    from blocks.resolve import ANALYTICS_BLOCK, resolve_block
    from clinicflow.opendental import metrics

    console = Console()
    chosen = list(dict.fromkeys(subsystem or SUBSYSTEMS))
    unknown = sorted(set(chosen) - set(SUBSYSTEMS))
    if unknown:
        raise typer.BadParameter(f"unknown subsystem(s) {unknown}; use {', '.join(SUBSYSTEMS)}",
                                 param_hint="--subsystem")
    tables: list[dict[str, Any]] = []
    try:
        report = collect(chosen, limit)
        if run_id:
            conn = resolve_block(ANALYTICS_BLOCK, PostgresServer).connect()
            try:
                tables = metrics.table_metrics(conn, run_id)
            finally:
                conn.close()
    except Exception as exc:  # noqa: BLE001 - the message names user@host/db, never the password
        try:
            where = resolve_block(ANALYTICS_BLOCK, PostgresServer).describe()
        except Exception:  # noqa: BLE001 - only names the database in the message
            where = "the analytics database"
        console.print(f"[red]cannot read {where}: {type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(EXIT_NO_DATA) from None
    failed = [name for name, section in report.items() if section.get("failed")]
    if as_json:
        typer.echo(json.dumps({"subsystems": report, "failed": failed}, default=str, indent=2))
    else:
        _print(console, report)
        if tables:
            detail = Table(title=f"run {run_id}")
            shown = ("table_name", "status", "mode", "rows", "seconds", "zero_dates", "nul_bytes", "deleted_rows",
                     "missing_rows", "changed_rows", "ranges_recopied", "swept", "verification", "error")
            for header in shown:
                detail.add_column(header.replace("_", " "), overflow="fold")
            for row in tables:
                detail.add_row(*("" if row[k] is None else f"{row[k]:.1f}" if k == "seconds" else str(row[k])
                                 for k in shown))
            console.print(detail)
        nightly = report.get("nightly", {}).get("runs") or []
        if nightly and nightly[0]["status"] != "ok":
            last = nightly[0]
            if last["status"] == "failed" and last["message"]:
                console.print(f"[red]last run failed: {escape(last['message'])}[/red]", soft_wrap=True,
                              highlight=False)
            elif last["status"] == "running":
                console.print(f"[yellow]last run {last['run_id']} is still marked running "
                              "(running now, or killed)[/yellow]", highlight=False)
        if failed:
            console.print(f"[red]latest run failed: {', '.join(failed)}[/red]", highlight=False)
        elif not _recorded(report):
            console.print("no runs recorded yet")
    if failed:
        raise typer.Exit(EXIT_LAST_FAILED)
    if not _recorded(report):
        raise typer.Exit(EXIT_NO_DATA)
