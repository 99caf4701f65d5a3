"""Fixtures for the ingestion tests: real PostgreSQL, moto's S3 server, the GCS emulator, local folders."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from tests.integration.dicom.conftest import (  # noqa: F401 - the same real-service fixtures as the DICOM tests
    GcsEmulator,
    S3Server,
    free_port,
    gcs_emulator,
    gcs_emulator_server,
    s3_env,
    s3_server,
    wait_for_port,
)
from tests.integration.ingest.llm_server import llm_server  # noqa: F401 - the scripted OpenAI-compatible server
from tests.integration.opendental.warehouse.conftest import pg_query

REFERRAL = """Referral letter
Patient: {name}
MRN: {mrn}
DOB: 03/14/1961
Date of Service: 2024-05-{day:02d}
Provider: Dr. Alan Grant, DDS

Diagnosis: E11.9 type 2 diabetes; K02.52 dental caries
Procedures: D2391, 99213
Medications:
- Metformin 500 mg
- Amoxicillin 500 mg

Summary: Caries on tooth 30, restored. Follow up in six months.
"""

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def referral(n: int) -> bytes:
    return REFERRAL.format(name=f"Patient {n}", mrn=f"MRN{n:06d}", day=1 + n % 28).encode()


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def ingest_db(make_pg_db: Callable[[str], Any]) -> Any:
    from clinicflow.ingest.db import ensure_schema

    server = make_pg_db("ingest")
    conn = server.connect()
    try:
        ensure_schema(conn)
    finally:
        conn.close()
    return server


pg_rows = pg_query  # one way to read PostgreSQL in tests (the load tests' helper)
