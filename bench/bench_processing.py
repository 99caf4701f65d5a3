"""Bench: the data-processing service.

1. **Peak detection** on ``--points`` rows (default 10M) of one Parquet
   column: the ``peak_detection`` processor (streamed, 1M-row chunks with
   overlap) against the plain script an analyst would write (the anchor):
   ``pd.read_parquet`` + one ``scipy.signal.find_peaks`` call. Each case in a
   child process (own peak RSS); rounds interleave (the machine is shared).
   Prints rows/s, the ratio processor / anchor, peak RSS, and checks both find
   the same peaks.
2. **Submissions**: against a running service (real Prefect server,
   ``clinicflow processing workers``, ``clinicflow serve``, PostgreSQL):
   submission -> PROCESSING on an idle service, then ``--jobs`` (default 200)
   ``POST /api/etl/process`` sent at once: p50/p95 submit latency, jobs/minute
   until all are COMPLETED, and that none was lost or run twice (one row and
   one task run with run_count 1 per request). The anchor, in the same run:
   the same jobs through a minimal Celery + Redis app (``bench.celery_anchor``,
   the replaced stack) on as many worker slots; the ratio of jobs/minute.

    uv run --frozen python -m bench.bench_processing [--points 10000000] [--jobs 200] [--processes 4]
        [--threads 1] [--prefect-db postgres|sqlite] [--api-workers 2] [--skip-peaks] [--skip-jobs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PEAK_PARAMS = {"height": 2.0, "distance": 50}


def write_signal(path: Path, points: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    writer = None
    step = 1_000_000
    for start in range(0, points, step):
        t = np.arange(start, min(points, start + step))
        values = np.sin(t / 40.0) * 2 + rng.normal(0, 0.3, len(t))
        table = pa.table({"t": t, "voltage": values})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def child_peaks(case: str, path: str) -> None:
    """Run one case in this (child) process; print JSON: seconds, peaks, peak RSS."""
    started = time.perf_counter()
    if case == "processor":
        from clinicflow.processing.datafiles import describe_file
        from clinicflow.processing.processors import DataSource, PeakDetectionParams, peak_detection

        meta = describe_file(Path(path), Path(path).name)
        source = DataSource(
            path=Path(path),
            name=meta.name,
            format=meta.format,
            row_count=meta.row_count,
            columns=[c["name"] for c in meta.columns],
        )
        result = peak_detection(source, PeakDetectionParams(column="voltage", **PEAK_PARAMS), lambda _p: None)
        peaks, rows = result["count"], result["rows"]
    else:
        import pandas as pd
        from scipy.signal import find_peaks

        values = pd.read_parquet(path, columns=["voltage"])["voltage"].to_numpy()
        found, _ = find_peaks(values, **PEAK_PARAMS)
        peaks, rows = len(found), len(values)
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peaks": peaks, "rows": rows, "rss_mb": rss_mb}))


def bench_peaks(points: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-processing-") as tmp:
        path = Path(tmp) / "signal.parquet"
        write_signal(path, points)
        runs: dict[str, list[dict[str, Any]]] = {"processor": [], "anchor": []}
        for _ in range(rounds):
            for case in runs:
                out = subprocess.run(
                    [sys.executable, "-m", "bench.bench_processing", "--child", case, str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {case: min(r["seconds"] for r in results) for case, results in runs.items()}
    peaks = {case: {r["peaks"] for r in results} for case, results in runs.items()}
    assert peaks["processor"] == peaks["anchor"], peaks
    assert len(peaks["anchor"]) == 1, peaks
    print(f"peak detection, {points:,} points, find_peaks({PEAK_PARAMS}), best of {rounds}:")
    for case, label in (
        ("processor", "peak_detection processor (1M-row chunks)"),
        ("anchor", "plain pandas+scipy script (anchor)"),
    ):
        rss = max(r["rss_mb"] for r in runs[case])
        print(f"  {label:45s} {points / best[case]:>12,.0f} rows/s  {best[case]:6.2f} s  peak RSS {rss:6.0f} MB")
    print(
        f"  ratio processor/anchor (rows/s): {best['anchor'] / best['processor']:.2f}  "
        f"(same {peaks['anchor'].pop():,} peaks)"
    )


async def post_json(host: str, port: int, path: str, token: str, payload: dict[str, Any]) -> tuple[int, Any]:
    """One HTTP/1.1 POST on a connection of its own (as from 200 separate clients), with nothing but asyncio.

    Not httpx: 200 requests at once through one httpx client took 4-5 s at p95 against an ASGI app
    that does nothing (this machine, load 7), 170-230 ms with this; the figure is the service's, not the
    client library's.
    """
    body = json.dumps(payload).encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(content)


async def submit_all(url: str, token: str, file_id: int, jobs: int) -> list[tuple[float, dict[str, Any]]]:
    from urllib.parse import urlsplit

    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80

    async def one(i: int) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        status, answer = await post_json(host, port, "/api/etl/process", token, job_request(file_id, i))
        if status != 202:
            print(f"  submission {i}: HTTP {status}: {str(answer)[:300]}")
        return time.perf_counter() - started, answer

    return list(await asyncio.gather(*(one(i) for i in range(jobs))))


def job_request(file_id: int, i: int) -> dict[str, Any]:
    return {
        "data_file_id": file_id,
        "processing_type": "rolling_mean",
        "parameters": {"window": 5 + i % 20, "columns": ["voltage"]},
    }


def wait_rows(database: Any, ids: list[int], timeout: float = 1800) -> list[dict[str, Any]]:
    """The rows once none is PENDING/PROCESSING (read from PostgreSQL: no HTTP in the measured path)."""
    from clinicflow.processing import store

    conn = database.connect()
    try:
        deadline = time.monotonic() + timeout
        while True:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT id, status, task_run_id::text, worker, error, "
                    "extract(epoch FROM created_at), extract(epoch FROM started_at), "
                    "extract(epoch FROM finished_at) FROM processing.results WHERE id = ANY(%s)",
                    (ids,),
                )
                found = [
                    dict(
                        zip(
                            ("id", "status", "task_run_id", "worker", "error", "created", "started", "finished"),
                            r,
                            strict=True,
                        )
                    )
                    for r in cur.fetchall()
                ]
            conn.rollback()
            if not [r for r in found if r["status"] in store.ACTIVE] or time.monotonic() > deadline:
                return sorted(found, key=lambda r: r["id"])
            time.sleep(0.2)
    finally:
        conn.close()


def throughput(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """(seconds from the first submission to the last end, jobs/minute)."""
    seconds = float(max(r["finished"] for r in rows) - min(r["created"] for r in rows))
    return seconds, len(rows) / seconds * 60


def check_once(label: str, ids: list[int], rows: list[dict[str, Any]]) -> None:
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    lost = set(ids) - {r["id"] for r in rows}
    print(f"  {label}: rows {len(rows)}, distinct ids {len(set(ids))}, lost {len(lost)}, statuses {statuses}")
    failed = [r["error"] for r in rows if r["status"] != "COMPLETED"][:3]
    assert not lost, failed
    assert len(set(ids)) == len(ids), failed
    assert statuses == {"COMPLETED": len(ids)}, failed


def bench_jobs(jobs: int, processes: int, threads: int, prefect_db: str, api_workers: int) -> None:
    import httpx

    from blocks.databases import PostgresServer
    from clinicflow.core.heap import freeze_start_up_objects
    from tests.conftest import unique_name
    from tests.integration.processing.service_support import TOKEN, create_database, drop_database, start_service

    admin = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres")
    name = unique_name("bench_processing")
    database = create_database(admin, name)
    prefect_url = None
    if prefect_db == "postgres":  # as in production (the Prefect Helm chart's default), not SQLite
        create_database(admin, f"{name}_prefect")
        prefect_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}_prefect"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-processing-service-") as tmp:
            # Every job as a background task run (the tests' service sends files of 5,000 rows to the work pool).
            service = start_service(
                Path(tmp),
                database,
                task_workers=processes,
                task_worker_limit=threads,
                extra_env={"CLINICFLOW_PROCESSING_DEPLOYMENT_MIN_ROWS": "20000000"},
                prefect_database_url=prefect_url,
                api_workers=api_workers,
            )
            try:
                data = Path(tmp) / "signal.parquet"
                write_signal(data, 5_000)
                with service.client() as client, open(data, "rb") as handle:
                    data_file = client.post("/api/etl/files", files={"file": ("signal.parquet", handle)}).json()
                    time.sleep(15)  # the task workers subscribe
                    idle = []
                    for i in range(6):  # one at a time on an idle service: submission -> PROCESSING
                        job = client.post("/api/etl/process", json=job_request(data_file["id"], i)).json()
                        row = wait_rows(database, [job["id"]])[0]
                        if i:  # the first waits for the task workers to finish starting (a warm-up)
                            idle.append(row["started"] - row["created"])
                # The client's own collector pauses (its heap holds the bench's imports) are not the service's latency.
                freeze_start_up_objects()
                started = time.perf_counter()
                submitted = asyncio.run(submit_all(service.url, TOKEN, data_file["id"], jobs))
                submit_seconds = time.perf_counter() - started
                ids = [body["id"] for _, body in submitted]
                rows = wait_rows(database, ids)
                with httpx.Client(base_url=service.stack.api_url, timeout=60) as prefect:
                    run_counts = [
                        prefect.get(f"/task_runs/{r['task_run_id']}").json()["run_count"]
                        for r in rows
                        if r["task_run_id"]
                    ]
            finally:
                service.close()
            anchor_rows, anchor_submit = run_celery_anchor(
                service.env, database, data_file["id"], jobs, processes * threads
            )
    finally:
        drop_database(admin, name)
        if prefect_url:
            drop_database(admin, f"{name}_prefect")
    latencies = sorted(seconds for seconds, _ in submitted)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    seconds, per_minute = throughput(rows)
    anchor_seconds, anchor_per_minute = throughput(anchor_rows)
    print(
        f"{jobs} concurrent submissions, rolling_mean on 5,000 rows; API: {api_workers} process(es); Prefect server "
        f"on {'PostgreSQL' if prefect_url else 'SQLite'}; task workers: {processes} processes x {threads} threads; "
        f"Celery anchor: prefork --concurrency "
        f"{processes * threads}, Redis broker"
    )
    print(
        f"  idle submission -> PROCESSING (5 jobs one at a time, after one warm-up job): "
        f"{', '.join(f'{s * 1000:.0f}' for s in idle)} ms (max {max(idle) * 1000:.0f} ms)"
    )
    print(
        f"  submit latency p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"all sent in {submit_seconds:.2f} s"
    )
    print(f"  service: all ended {seconds:.1f} s after the first submission: {per_minute:.0f} jobs/minute")
    print(
        f"  Celery + Redis anchor: {anchor_seconds:.1f} s: {anchor_per_minute:.0f} jobs/minute "
        f"(insert + delay per job p95 {anchor_submit * 1000:.0f} ms)"
    )
    print(f"  ratio service/Celery (jobs/minute): {per_minute / anchor_per_minute:.2f}")
    check_once("service", ids, rows)
    check_once("Celery anchor", [r["id"] for r in anchor_rows], anchor_rows)
    assert len(run_counts) == jobs, f"task runs per job: {sorted(set(run_counts))}"
    assert set(run_counts) == {1}, f"task runs per job: {sorted(set(run_counts))}"
    print(
        f"  service: {len(run_counts)} task runs, each ran once; {len({r['worker'] for r in rows})} task "
        f"worker processes shared the jobs"
    )


def run_celery_anchor(
    env: dict[str, str], database: Any, file_id: int, jobs: int, concurrency: int
) -> tuple[list[dict[str, Any]], float]:
    """The same jobs through bench.celery_anchor: rows inserted PENDING and ``.delay()``ed, prefork workers."""
    import os

    from bench.celery_anchor import app, process_result_celery
    from clinicflow.processing import store
    from clinicflow.processing.processors import validate_request

    broker_db = f"redis://127.0.0.1:6379/{11 + os.getpid() % 4}"
    app.conf.broker_url = broker_db
    app.connection_for_write().default_channel.client.flushdb()
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp, open(Path(tmp) / "celery.log", "wb") as log:
        worker = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "bench.celery_anchor",
                "worker",
                "--concurrency",
                str(concurrency),
                "--pool",
                "prefork",
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env={**os.environ, **env, "CLINICFLOW_BENCH_CELERY_BROKER": broker_db},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            time.sleep(10)  # the prefork children start
            conn = database.connect()
            latencies, ids = [], []
            try:
                for i in range(jobs):
                    started = time.perf_counter()
                    request = job_request(file_id, i)
                    params = validate_request("rolling_mean", request["parameters"])
                    result_id = store.insert_result(conn, file_id, "rolling_mean", params.model_dump(mode="json"))
                    process_result_celery.delay(result_id)
                    latencies.append(time.perf_counter() - started)
                    ids.append(result_id)
            finally:
                conn.close()
            rows = wait_rows(database, ids)
        finally:
            from clinicflow_dev.demo_service import stop_process_group

            stop_process_group(worker)
    latencies.sort()
    return rows, latencies[int(len(latencies) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--processes", type=int, default=4, help="Task-worker processes (Celery: x threads).")
    parser.add_argument("--threads", type=int, default=1, help="Runs at once per task-worker process.")
    parser.add_argument(
        "--prefect-db",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="The Prefect server's database (PostgreSQL as in production; SQLite as `prefect server start` alone).",
    )
    parser.add_argument("--api-workers", type=int, default=2, help="API processes (`clinicflow serve --workers`).")
    parser.add_argument("--skip-peaks", action="store_true")
    parser.add_argument("--skip-jobs", action="store_true")
    args = parser.parse_args()
    if args.child:
        child_peaks(*args.child)
        return
    if not args.skip_peaks:
        bench_peaks(args.points, args.rounds)
    if not args.skip_jobs:
        bench_jobs(args.jobs, args.processes, args.threads, args.prefect_db, args.api_workers)


if __name__ == "__main__":
    main()
