"""The sections of ``clinicflow status``: each subsystem's latest runs as plain data (rendered by :mod:`.status`).

The database sections read PostgreSQL (the analytics database; the DICOM state tables in the reports
database); ``pipelines`` and ``fanout`` read the Prefect API when one is configured. Each section has a
``failed`` flag: whether the subsystem's latest run failed.
"""

from __future__ import annotations

from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.core.dbapi import PgConnection, PgCursor, column_names


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
    out = [
        {
            "run_id": r.run_id,
            "flow": r.flow_name,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "status": r.status,
            "tables": r.tables_total,
            "tables_failed": r.tables_failed,
            "rows": r.rows_loaded,
            "failed_tables": list(r.failed_tables),
            "message": r.message,
        }
        for r in runs
    ]
    return {"runs": out, "failed": bool(out) and out[0]["status"] != "ok"}


def ingest_status(conn: PgConnection, limit: int, schema: str = "ingest") -> dict[str, Any]:
    from clinicflow.core.sql import quote_ident

    s = quote_ident(schema, "postgres")
    with conn.cursor() as cur:
        runs = (
            _rows(
                cur,
                f"SELECT run_id, pattern, mode, started_at, finished_at, status, counts, message "
                f"FROM {s}.runs ORDER BY started_at DESC LIMIT %s",
                (limit,),
            )
            if _exists(cur, f"{s}.runs")
            else []
        )
        letters = (
            _rows(
                cur,
                f"SELECT stage, reason, count(*) AS open FROM {s}.dead_letters WHERE status = 'open' "
                "GROUP BY stage, reason ORDER BY count(*) DESC, stage, reason",
            )
            if _exists(cur, f"{s}.dead_letters")
            else []
        )
    conn.rollback()
    return {"runs": runs, "open_dead_letters": letters, "failed": bool(runs) and runs[0]["status"] == "failed"}


def processing_status(conn: PgConnection, limit: int) -> dict[str, Any]:
    with conn.cursor() as cur:
        if not _exists(cur, "processing.results"):
            conn.rollback()
            return {"jobs_by_status": {}, "jobs": [], "failed": False}
        counts = {
            r["status"]: r["n"]
            for r in _rows(cur, "SELECT status, count(*) AS n FROM processing.results GROUP BY status ORDER BY status")
        }
        jobs = _rows(
            cur,
            "SELECT id, processing_type, status, left(error, 300) AS error, created_at, finished_at "
            "FROM processing.results ORDER BY id DESC LIMIT %s",
            (limit,),
        )
    conn.rollback()
    finished = [j for j in jobs if j["status"] not in ("PENDING", "PROCESSING")]
    return {
        "jobs_by_status": counts,
        "jobs": jobs,
        "failed": bool(finished) and finished[0]["status"] in ("FAILED", "CRASHED"),
    }


def dicom_status(conn: PgConnection, limit: int, schema: str = "clinicflow_dicom") -> dict[str, Any]:
    from clinicflow.core.sql import quote_ident

    s = quote_ident(schema, "postgres")
    with conn.cursor() as cur:
        if not _exists(cur, f"{s}.files"):
            conn.rollback()
            return {"runs": [], "failed": False}
        verdicts = (
            f"LEFT JOIN {s}.runs v ON v.dataset = r.dataset AND v.run_id = r.run_id"
            if _exists(cur, f"{s}.runs")
            # A state schema from before the runs table (made by the next run): no verdicts yet.
            else "LEFT JOIN (SELECT NULL::text AS status, NULL::text AS message, NULL::timestamptz AS finished_at) v "
            "ON false"
        )
        # A DICOM run is (dataset, run id): its files seen and its failures, by last activity.
        runs = _rows(
            cur,
            f"""
            WITH seen AS (SELECT dataset, seen_run AS run_id, max(updated_at) AS at,
                                 count(*) FILTER (WHERE status = 'done') AS files_done
                          FROM {s}.files WHERE seen_run IS NOT NULL GROUP BY 1, 2),
                 failed AS (SELECT dataset, run_id, max(recorded_at) AS at, count(*) AS failures
                            FROM {s}.failures GROUP BY 1, 2)
            SELECT r.dataset, r.run_id, greatest(r.at, v.finished_at) AS last_activity, r.files_done, r.failures,
                   v.status AS verdict, v.message
            FROM (SELECT coalesce(seen.dataset, failed.dataset) AS dataset,
                         coalesce(seen.run_id, failed.run_id) AS run_id, greatest(seen.at, failed.at) AS at,
                         coalesce(files_done, 0) AS files_done, coalesce(failures, 0) AS failures
                  FROM seen FULL JOIN failed ON seen.dataset = failed.dataset AND seen.run_id = failed.run_id) r
            {verdicts}
            ORDER BY 3 DESC LIMIT %s""",
            (limit,),
        )
    conn.rollback()
    # The run's verdict when it recorded one (failures within its threshold are ok); before, any failure.
    latest = runs[0] if runs else None
    failed = latest is not None and (latest["verdict"] == "failed" if latest["verdict"] else latest["failures"] > 0)
    return {"runs": runs, "failed": failed}


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
                sort=FlowRunSort.START_TIME_DESC,
                limit=200,
            )
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[FANOUT_TAG])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=1,
            )
            partitions: list[Any] = []
            run_tag = next((t for t in children[0].tags if t.startswith("fanout-run:")), None) if children else None
            if run_tag:
                partitions = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[run_tag])),
                    sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                    limit=500,
                )
        last: dict[str, Any] = {}
        for run in pipeline_runs:
            name = str(run.parameters.get("pipeline") or run.name)
            if name not in last and run.state is not None and run.state.is_final():
                last[name] = run
        pipelines = [
            {
                "pipeline": name,
                "state": r.state.name,
                "started_at": r.start_time,
                "flow_run_id": str(r.id),
                "message": (r.state.message or "")[:300],
            }
            for name, r in sorted(last.items())
        ][: limit * 10]
        parts = [
            {
                "partition": r.name,
                "state": r.state.name if r.state else "",
                "started_at": r.start_time,
                "ended_at": r.end_time,
                "flow_run_id": str(r.id),
            }
            for r in partitions
        ]
        return {
            "pipelines": {"runs": pipelines, "failed": any(p["state"] in ("Failed", "Crashed") for p in pipelines)},
            "fanout": {
                "run_key": run_tag.partition(":")[2] if run_tag else None,
                "partitions": parts,
                "failed": any(p["state"] in ("Failed", "Crashed") for p in parts),
            },
        }

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
        with connected(resolve_block(ANALYTICS_BLOCK, PostgresServer)) as conn:
            if "nightly" in subsystems:
                report["nightly"] = nightly_status(conn, limit)
            if "ingest" in subsystems:
                report["ingest"] = ingest_status(conn, limit)
            if "processing" in subsystems:
                report["processing"] = processing_status(conn, limit)
    if "cdc" in subsystems:
        from clinicflow.cli.cdc import cdc_status_section

        report["cdc"] = cdc_status_section()
    if "dicom" in subsystems:
        try:
            with connected(resolve_block(DICOM_REPORTS_BLOCK, PostgresServer)) as conn:
                report["dicom"] = dicom_status(conn, limit)
        except Exception as exc:  # noqa: BLE001 - another database: its absence is a line, not exit 2
            report["dicom"] = {
                "unavailable": f"cannot read the DICOM state database: {type(exc).__name__}",
                "failed": False,
            }
    if {"pipelines", "fanout"} & set(subsystems):
        report.update({k: v for k, v in prefect_status(limit).items() if k in subsystems})
    return report
