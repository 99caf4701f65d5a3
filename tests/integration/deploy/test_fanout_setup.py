"""Fan-out pieces against a real (test-harness) Prefect API, no worker: the concurrency limit set-up and a
partition whose child cannot be started."""

from __future__ import annotations

import uuid

import pytest


def test_fanout_setup_creates_then_keeps_then_resizes_the_global_limit(prefect_server: None) -> None:
    from prefect.client.orchestration import get_client

    from clinicflow.cli.fanout import ensure_concurrency_limit

    name = f"clinicflow-fanout-{uuid.uuid4().hex[:8]}"
    assert ensure_concurrency_limit(name, 3) == "created"
    assert ensure_concurrency_limit(name, 3) == "unchanged"
    assert ensure_concurrency_limit(name, 5) == "updated"
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(name)
    assert (limit.limit, limit.active) == (5, True)
    with pytest.raises(ValueError, match="at least 1"):
        ensure_concurrency_limit(name, 0)


def test_a_partition_whose_child_cannot_start_fails_by_name(prefect_server: None) -> None:
    from flows.nightly_fanout import run_partitions

    done = run_partitions(
        "no-such-flow/no-such-deployment",
        f"night-{uuid.uuid4().hex[:8]}",
        {"t1-patient": {"tables": ["patient"]}},
        width=2,
    )
    (child,) = done.values()
    assert child.partition == "t1-patient"
    assert child.failed
    assert "could not start no-such-flow/no-such-deployment" in child.message
    with pytest.raises(ValueError, match="width"):
        run_partitions("x/y", "k", {}, width=0)
