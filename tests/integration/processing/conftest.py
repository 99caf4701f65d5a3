"""Fixtures of the processing tests: an analytics database with the processing tables, a local bucket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blocks.databases import PostgresServer
from clinicflow.connectors.objectstore.stores import LocalStore
from clinicflow.processing import store
from tests.conftest import unique_name
from tests.integration.opendental.warehouse.conftest import pg_query
from tests.integration.processing.hostile_scripts import HOSTILE, SENTINEL
from tests.integration.processing.service_support import Service, create_database, drop_database, start_service


@pytest.fixture
def analytics(make_pg_db: Callable[[str], PostgresServer]) -> PostgresServer:
    server = make_pg_db("processing")
    conn = server.connect()
    try:
        store.ensure_tables(conn)
    finally:
        conn.close()
    return server


@pytest.fixture
def bucket(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "bucket")


# One way to read PostgreSQL in tests: the load tests' helper (the duplicates tool paired a copy here).
pg_rows = pg_query


SCRIPTS = {
    "crashes": "def process(df, params):\n    return {'x': 1 / 0}\n",
    "column_sum": "def process(df, params):\n    return {'sum': float(df[params['column']].sum())}\n",
    # Names its process (its comm, seen from the host) then waits: the tests find and kill it by that name.
    "waits": "import ctypes, time\n"
    "def process(df, params):\n"
    "    ctypes.CDLL(None).prctl(15, params['marker'].encode())  # PR_SET_NAME\n"
    "    time.sleep(600)\n"
    "    return {}\n",
    **HOSTILE,
}


# A small upload limit to test it cheaply; a secret in the worker's environment no script may see.
SERVICE_LIMITS = {"CLINICFLOW_PROCESSING_MAX_UPLOAD_MB": "8", "CLINICFLOW_SANDBOX_SENTINEL_PASSWORD": SENTINEL}


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    admin = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres")
    name = unique_name("processing_api")
    database = create_database(admin, name)
    try:
        running = start_service(
            tmp_path_factory.mktemp("processing-service"), database, task_workers=2, extra_env=SERVICE_LIMITS
        )
        for script, text in SCRIPTS.items():
            (running.scripts_dir / f"{script}.py").write_text(text, encoding="utf-8")
        try:
            yield running
        finally:
            running.close()
    finally:
        drop_database(admin, name)
