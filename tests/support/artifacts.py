"""Artifacts of one flow run (the session's Prefect server is shared: "the latest artifact with key K" may be
another test's)."""

from __future__ import annotations

import json
from typing import Any


def flow_run_artifacts(flow_run_id: Any) -> dict[str, Any]:
    """Every artifact of the flow run ``flow_run_id``, by key."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def artifact_rows(state: Any, key: str) -> list[dict[str, Any]]:
    """The rows of table artifact ``key`` written by the flow run that ended in ``state``."""
    data = flow_run_artifacts(state.state_details.flow_run_id)[key].data
    return json.loads(data) if isinstance(data, str) else data
