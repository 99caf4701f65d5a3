"""Bench: the data-processing service.

1. **Peak detection** on ``--points`` rows (default 10M) of one Parquet
   column: the ``peak_detection`` processor (streamed, 1M-row chunks with
   overlap) against the plain script an analyst would write (the anchor):
   ``pd.read_parquet`` + one ``scipy.signal.find_peaks`` call. Each case in a
   child process (own peak RSS); rounds interleave (the machine is shared).
   Prints rows/s, the ratio processor / anchor, peak RSS, and checks both find
   the same peaks.
2. **Submissions**: ``--jobs`` (default 200) ``POST /api/etl/process`` sent at
   once against a running service (real Prefect server, process worker,
   ``clinicflow serve``, PostgreSQL): p50/p95 submit latency, jobs/minute
   until all are COMPLETED, and that none was lost or run twice (one row and
   one flow run per request).

    uv run --frozen python -m bench.bench_processing [--points 10000000] [--jobs 200] [--worker-limit 4]
        [--skip-peaks] [--skip-jobs]
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
        source = DataSource(path=Path(path), name=meta.name, format=meta.format, row_count=meta.row_count,
                            columns=[c["name"] for c in meta.columns])
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
                out = subprocess.run([sys.executable, "-m", "bench.bench_processing", "--child", case, str(path)],
                                     capture_output=True, text=True, check=True)
                runs[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {case: min(r["seconds"] for r in results) for case, results in runs.items()}
    peaks = {case: {r["peaks"] for r in results} for case, results in runs.items()}
    assert peaks["processor"] == peaks["anchor"] and len(peaks["anchor"]) == 1, peaks
    print(f"peak detection, {points:,} points, find_peaks({PEAK_PARAMS}), best of {rounds}:")
    for case, label in (("processor", "peak_detection processor (1M-row chunks)"),
                        ("anchor", "plain pandas+scipy script (anchor)")):
        rss = max(r["rss_mb"] for r in runs[case])
        print(f"  {label:45s} {points / best[case]:>12,.0f} rows/s  {best[case]:6.2f} s  peak RSS {rss:6.0f} MB")
    print(f"  ratio processor/anchor (rows/s): {best['anchor'] / best['processor']:.2f}  "
          f"(same {peaks['anchor'].pop():,} peaks)")


async def submit_all(url: str, token: str, file_id: int, jobs: int) -> list[tuple[float, dict[str, Any]]]:
    import httpx

    limits = httpx.Limits(max_connections=jobs, max_keepalive_connections=jobs)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300,
                                 limits=limits) as client:
        async def one(i: int) -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            response = await client.post("/api/etl/process", json={
                "data_file_id": file_id, "processing_type": "rolling_mean",
                "parameters": {"window": 5 + i % 20, "columns": ["voltage"]}})
            if response.status_code != 202:
                print(f"  submission {i}: HTTP {response.status_code}: {response.text[:300]}")
            return time.perf_counter() - started, response.json()
        return list(await asyncio.gather(*(one(i) for i in range(jobs))))


def bench_jobs(jobs: int, worker_limit: int) -> None:
    import httpx

    from blocks.databases import PostgresServer
    from tests.conftest import unique_name
    from tests.integration.processing.service_support import TOKEN, create_database, drop_database, start_service

    admin = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres")
    name = unique_name("bench_processing")
    database = create_database(admin, name)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-processing-service-") as tmp:
            service = start_service(Path(tmp), database, worker_limit=worker_limit)
            try:
                data = Path(tmp) / "signal.parquet"
                write_signal(data, 5_000)
                with service.client() as client, open(data, "rb") as handle:
                    data_file = client.post("/api/etl/files", files={"file": ("signal.parquet", handle)}).json()
                started = time.perf_counter()
                submitted = asyncio.run(submit_all(service.url, TOKEN, data_file["id"], jobs))
                submit_seconds = time.perf_counter() - started
                ids = [body["id"] for _, body in submitted]
                with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"},
                                  timeout=60) as client:
                    deadline = time.monotonic() + 3600
                    while True:
                        page = client.get("/api/etl/results", params={"limit": 500}).json()
                        active = [r for r in page["items"] if r["status"] in ("PENDING", "PROCESSING")]
                        if not active or time.monotonic() > deadline:
                            break
                        time.sleep(1)
                    total_seconds = time.perf_counter() - started
                rows = page["items"]
                flow_runs = _flow_runs_of(service.stack.api_url)
            finally:
                service.close()
    finally:
        drop_database(admin, name)
    latencies = sorted(seconds for seconds, _ in submitted)
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    print(f"{jobs} concurrent submissions (worker limit {worker_limit}, rolling_mean on 5,000 rows):")
    print(f"  submit latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95) - 1] * 1000:.0f} ms, all sent in {submit_seconds:.1f} s")
    print(f"  all ended in {total_seconds:.1f} s: {jobs / total_seconds * 60:.1f} jobs/minute; statuses {statuses}")
    lost = set(ids) - {r["id"] for r in rows}
    duplicated = len(ids) - len(set(ids))
    runs_per_result = {}
    for run in flow_runs:
        key = run["parameters"].get("result_id")
        runs_per_result[key] = runs_per_result.get(key, 0) + 1
    print(f"  rows {len(rows)}, distinct ids {len(set(ids))}, lost {len(lost)}, duplicated ids {duplicated}, "
          f"flow runs {len(flow_runs)} (results with more than one run: "
          f"{sum(1 for n in runs_per_result.values() if n > 1)})")
    assert not lost and not duplicated and len(rows) == jobs and statuses == {"COMPLETED": jobs}
    assert len(flow_runs) == jobs and set(runs_per_result) == set(ids)


def _flow_runs_of(api_url: str) -> list[dict[str, Any]]:
    import httpx

    runs: list[dict[str, Any]] = []
    with httpx.Client(base_url=api_url, timeout=60) as client:
        while True:
            page = client.post("/flow_runs/filter", json={"limit": 200, "offset": len(runs)}).json()
            runs += page
            if len(page) < 200:
                return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--worker-limit", type=int, default=4)
    parser.add_argument("--skip-peaks", action="store_true")
    parser.add_argument("--skip-jobs", action="store_true")
    args = parser.parse_args()
    if args.child:
        child_peaks(*args.child)
        return
    if not args.skip_peaks:
        bench_peaks(args.points, args.rounds)
    if not args.skip_jobs:
        bench_jobs(args.jobs, args.worker_limit)


if __name__ == "__main__":
    main()
