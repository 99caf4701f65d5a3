"""Fixtures for the ingestion tests: real PostgreSQL, moto's S3 server, the GCS emulator, local folders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.ingest.llm_server import llm_server  # noqa: F401 - the scripted OpenAI-compatible server
from tests.integration.opendental.warehouse.conftest import pg_query
from tests.support.ingest_files import (  # noqa: F401 - re-exported: the ingest tests import them from here
    PNG,
    REFERRAL,
    referral,
    write_tree,
)

# The S3/GCS server fixtures are the session's (tests/support/services.py); these names stay importable here.
from tests.support.services import GcsEmulator, S3Server, free_port, wait_for_port  # noqa: F401


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


def __getattr__(name: str) -> Any:
    if name in ("gcs_emulator", "gcs_emulator_server", "s3_env", "s3_server"):
        from tests.support import services

        return getattr(services, name)
    raise AttributeError(name)


pg_rows = pg_query  # one way to read PostgreSQL in tests (the load tests' helper)
