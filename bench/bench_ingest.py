"""Bench: list + stage N small objects from an S3 server (moto) against a boto3 list + download loop.

Anchor: what ``aws s3 sync`` does, in one boto3 loop: list the prefix page
by page and download every object to a local folder. Ours: the ingestion's
listing (literal prefix, glob match) and staging into PostgreSQL
``ingest.documents`` (read, sha256, MIME sniffing, batched ``INSERT … ON
CONFLICT``), no extraction. Both run against the same moto server in the
same process; prints files/s of each and the ratio (ours / anchor).

Memory: the staging runs again in a child process at two file counts and
prints each child's peak RSS: it should stay flat as the file count grows
(memory bounded by the batch, not the file set).

    uv run --frozen python -m bench.bench_ingest [--files 10000] [--small 2000] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )


def _upload(endpoint: str, bucket: str, prefix: str, count: int) -> None:
    client = _client(endpoint)
    body = b"Referral letter\nMRN: %d\nProvider: Dr. Bench\nSummary: routine check.\n" * 4

    def put(n: int) -> None:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{n % 50:02d}/doc{n:06d}.txt", Body=body % ((n,) * 4))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))


def anchor_sync(endpoint: str, bucket: str, prefix: str, folder: Path) -> int:
    """boto3: list the prefix and download each object (``aws s3 sync``-style), sequentially."""
    client = _client(endpoint)
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            target = folder / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(target))
            count += 1
    return count


def ours_stage(endpoint: str, bucket: str, prefix: str, database: str, batch_size: int) -> int:
    """The ingestion: listing by literal prefix + glob, then staging in batches (no extraction)."""
    from blocks.databases import PostgresServer
    from clinicflow.connectors.objectstore.patterns import parse_location
    from clinicflow.connectors.objectstore.stores import S3Store, matching_objects
    from clinicflow.ingest.db import ensure_schema
    from clinicflow.ingest.pipeline import IngestSettings, process_file_batch, run_batches

    server = PostgresServer(database=database)
    conn = server.connect()
    ensure_schema(conn)
    conn.close()
    location = parse_location(f"s3://{bucket}/{prefix}/**/*.txt")
    store = S3Store(_client(endpoint), bucket)
    settings = IngestSettings(run_id=f"bench-{prefix}")
    counts = run_batches(
        matching_objects(store, location),
        batch_size,
        lambda batch, before: process_file_batch(server, store, batch, settings, None, before),
    )
    return counts.staged


def _child(args: argparse.Namespace) -> None:
    staged = ours_stage(args.endpoint, args.bucket, args.prefix, args.database, args.batch_size)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{staged} {peak_kib}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=2_000, help="File count of the smaller memory run.")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    import logging

    from moto.server import ThreadedMotoServer

    from blocks.databases import PostgresServer
    from clinicflow.core.sql import quote_ident
    from clinicflow_dev.admin import admin_pg

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    admin = PostgresServer(database="postgres")
    databases: list[str] = []

    def new_database() -> str:
        name = f"cf_bench_ingest_{uuid.uuid4().hex[:8]}"
        admin_pg(admin, f"CREATE DATABASE {quote_ident(name, 'postgres')}")
        databases.append(name)
        return name

    try:
        bucket = "bench-ingest"
        _client(endpoint).create_bucket(Bucket=bucket)
        started = time.perf_counter()
        _upload(endpoint, bucket, "main", args.files)
        _upload(endpoint, bucket, "small", args.small)
        print(f"uploaded {args.files} + {args.small} objects to moto S3 in {time.perf_counter() - started:.1f}s")

        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            synced = anchor_sync(endpoint, bucket, "main", Path(folder))
            anchor_seconds = time.perf_counter() - started
        database = new_database()
        started = time.perf_counter()
        staged = ours_stage(endpoint, bucket, "main", database, args.batch_size)
        ours_seconds = time.perf_counter() - started
        assert synced == staged == args.files, (synced, staged)
        anchor_rate, ours_rate = synced / anchor_seconds, staged / ours_seconds
        print(f"anchor boto3 list + download: {synced} files in {anchor_seconds:.1f}s = {anchor_rate:.0f} files/s")
        print(f"ours list + stage to PostgreSQL: {staged} files in {ours_seconds:.1f}s = {ours_rate:.0f} files/s")
        print(f"ratio ours/anchor: {ours_rate / anchor_rate:.2f}x")

        for prefix, count in (("small", args.small), ("main", args.files)):
            child = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.bench_ingest",
                    "--child",
                    "--endpoint",
                    endpoint,
                    "--bucket",
                    bucket,
                    "--prefix",
                    prefix,
                    "--database",
                    new_database(),
                    "--batch-size",
                    str(args.batch_size),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ},
            )
            staged_child, peak_kib = map(int, child.stdout.split()[-2:])
            assert staged_child == count, (staged_child, count)
            print(f"peak RSS staging {count} files (batch {args.batch_size}): {peak_kib / 1024:.0f} MiB")
    finally:
        for name in databases:
            admin_pg(admin, f"DROP DATABASE IF EXISTS {quote_ident(name, 'postgres')} WITH (FORCE)")
        moto.stop()


if __name__ == "__main__":
    main()
