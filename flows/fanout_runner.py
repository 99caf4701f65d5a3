"""Starting and waiting for child deployment runs, one per partition (shared by every fan-out parent).

Wiring only (keys, rerun decisions and backoff are in clinicflow.scaleout.fanout):
:func:`run_partitions` starts one child deployment run per partition with
``run_deployment(..., timeout=0, idempotency_key=<run key>:<partition>)``, at
most ``width`` at a time, polls them with backoff and returns each partition's
finished child. Children already started under the same run key are kept
(completed), waited for (still running) or started again under a new attempt
key (failed, crashed, cancelled): a rerun redoes only those.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, cast

from clinicflow.core import settings
from clinicflow.core.logs import get_logger
from clinicflow.scaleout import fanout

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

FANOUT_TAG = "clinicflow-fanout"


def run_tag(run_key: str) -> str:
    """The tag every child of one fanned-out run carries (how a rerun finds them)."""
    return f"fanout-run:{run_key}"


def _child_run(flow_run: Any, run_key: str) -> fanout.ChildRun | None:
    parsed = fanout.parse_child_key(run_key, flow_run.idempotency_key)
    if parsed is None:
        return None
    state = flow_run.state
    return fanout.ChildRun(
        partition=parsed[0],
        attempt=parsed[1],
        flow_run_id=str(flow_run.id),
        state_type=state.type.value if state else "SCHEDULED",
        state_name=state.name if state else "",
        message=(state.message or "") if state else "",
        seconds=flow_run.total_run_time.total_seconds() if flow_run.total_run_time else 0.0,
    )


def read_children(run_key: str, ids: list[str] | None = None) -> list[fanout.ChildRun]:
    """The child runs of ``run_key`` on the Prefect API (those of ``ids`` only, when given)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags

    flow_filter = (
        FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(i) for i in ids]))
        if ids is not None
        else FlowRunFilter(tags=FlowRunFilterTags(all_=[run_tag(run_key)]))
    )
    found: list[fanout.ChildRun] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_flow_runs(flow_run_filter=flow_filter, limit=200, offset=offset)
            found += [c for c in (_child_run(r, run_key) for r in page) if c is not None]
            if len(page) < 200:
                return found
            offset += 200


def start_child(deployment: str, run_key: str, partition: str, attempt: int, parameters: dict[str, Any]) -> str:
    """Start (or, for a key already used, find) a partition's child run; returns its flow run id."""
    from prefect.deployments import run_deployment

    started = run_deployment(
        deployment,
        parameters=parameters,
        timeout=0,
        idempotency_key=fanout.child_key(run_key, partition, attempt),
        flow_run_name=partition if attempt == 0 else f"{partition}-attempt{attempt}",
        tags=[FANOUT_TAG, run_tag(run_key)],
    )
    # Called from sync code, Prefect's async_dispatch takes the sync path: a FlowRun, not a coroutine
    # (its declared return type is the union of both).
    flow_run = cast("FlowRun", started)
    return str(flow_run.id)


def poll_cap() -> float:
    """Longest wait between two polls of the children: ``CLINICFLOW_FANOUT_POLL_CAP_SECONDS`` (default 10);
    short children (a local pool) finish sooner than a 10 s poll notices."""
    return settings.fanout_poll_cap_seconds()


def run_partitions(
    deployment: str, run_key: str, partitions: dict[str, dict[str, Any]], *, width: int
) -> dict[str, fanout.ChildRun]:
    """Run one child per partition (name -> parameters), ``width`` at a time; each partition's finished child."""
    log = get_logger()
    if width < 1:
        raise ValueError(f"fan-out: width must be at least 1, got {width}")
    previous = fanout.latest_attempts([c for c in read_children(run_key) if c.partition in partitions])
    done: dict[str, fanout.ChildRun] = {}
    to_start: list[tuple[str, int]] = []
    in_flight: dict[str, str] = {}
    for name in partitions:
        action, attempt = fanout.next_action(previous.get(name))
        if action == "keep":
            done[name] = previous[name]
            log.info("fan-out: %s completed in an earlier attempt, kept", name)
        elif action == "wait":
            in_flight[previous[name].flow_run_id] = name
        else:
            to_start.append((name, attempt))
            if action == "retry":
                log.info("fan-out: %s %s earlier, starting attempt %d", name, previous[name].state_name, attempt)
    delays = fanout.poll_delays(cap=poll_cap())
    while to_start or in_flight:
        while to_start and len(in_flight) < width:
            name, attempt = to_start.pop(0)
            try:
                in_flight[start_child(deployment, run_key, name, attempt, partitions[name])] = name
            except Exception as exc:  # noqa: BLE001 - this partition fails (named); the others go on
                done[name] = fanout.ChildRun(
                    name,
                    attempt,
                    "",
                    "FAILED",
                    "NotStarted",
                    f"could not start {deployment}: {type(exc).__name__}: {exc}",
                )
                log.error("fan-out: %s: %s", name, done[name].message)
        finished = [c for c in read_children(run_key, ids=list(in_flight)) if c.finished]
        for child in finished:
            done[in_flight.pop(child.flow_run_id)] = child
            log.info("fan-out: %s %s", child.partition, child.state_name)
        if finished:
            delays = fanout.poll_delays(cap=poll_cap())
        else:
            time.sleep(next(delays))
    return done


def concurrency_limit_name(limit: str | None = None) -> str:
    """The global concurrency limit children hold a slot of: ``limit`` (a clinic's own), else
    ``CLINICFLOW_FANOUT_LIMIT``, else ``clinicflow-fanout``."""
    return limit or settings.fanout_limit() or fanout.DEFAULT_CONCURRENCY_LIMIT


def child_slot(limit: str | None = None) -> Any:
    """One slot of the global concurrency limit for a child's work (a missing limit only warns)."""
    from prefect.concurrency.sync import concurrency

    # A global limit, not a deployment limit: children never sit in AwaitingConcurrencySlot (prefect#16027).
    return concurrency(concurrency_limit_name(limit), occupy=1, strict=False, lease_duration=120)
