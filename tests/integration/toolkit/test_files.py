"""File extractor/loader: CSV, JSON Lines and Parquet round trips, encodings, compression by suffix."""

from __future__ import annotations

import pytest

from clinicflow.toolkit.base import RunContext
from tests.unit.toolkit.test_files import stream

CTX = RunContext()
ROWS = [(i, f"Zoë {i}", None if i % 3 == 0 else f"{i}.5") for i in range(25)]


def test_file_loader_into_an_s3_bucket(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    from clinicflow.toolkit.configs import built, loader_of
    from flows.pipeline import resolve_connection

    bucket = s3_server.new_bucket()
    for key, value in {
        "BUCKET": bucket,
        "ENDPOINT_URL": s3_server.endpoint,
        "ACCESS_KEY_ID": "test",
        "SECRET_ACCESS_KEY": "test",
        "REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(f"CLINICFLOW_TOOLKIT_OUT_{key}", value)
    ctx = RunContext(parameters={"day": "2026-01-02"}, connections=resolve_connection)
    config = loader_of(
        {"kind": "file", "path": "exports/{day}/items.csv.gz", "bucket": {"kind": "s3", "block": "toolkit-out"}}
    )
    assert built(config, ctx).load(stream(), ctx) == 25
    body = s3_server.client().get_object(Bucket=bucket, Key="exports/2026-01-02/items.csv.gz")["Body"].read()
    import gzip

    lines = gzip.decompress(body).decode().splitlines()
    assert lines[0] == "id,name,amount"
    assert len(lines) == 26
