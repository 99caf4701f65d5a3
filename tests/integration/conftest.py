"""Every integration test runs against the session's Prefect server (tests/support/prefect_session.py):
PREFECT_API_URL is the same for all of them whatever order they run in, and no test process falls back
to a Prefect server of its own (ephemeral mode)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _session_prefect_api(prefect_server: None) -> None:
    return None
