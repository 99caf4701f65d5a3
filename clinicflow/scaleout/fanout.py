"""Fan-out of a run into child deployment runs: keys, rerun decisions, backoff, verdicts (no Prefect here).

A parent run splits its work into named partitions (planned by its subsystem: the nightly's tables in
:mod:`clinicflow.opendental.fanout`, DICOM key ranges in :mod:`clinicflow.dicom.partitions`, ingest prefix
groups in :mod:`clinicflow.ingest.partitions`), starts one child run per partition with the idempotency key
:func:`child_key` and waits for them. Children write their results where they belong (PostgreSQL) and the
parent reads them back from there, so nothing depends on Prefect result storage across pods.

A rerun with the same run key looks at the children already started for it
(:func:`next_action`): a completed partition is kept, a running one is waited
for, a failed / crashed / cancelled one gets a new attempt (a new key).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from clinicflow.core.verdicts import failed_of

DEFAULT_CONCURRENCY_LIMIT = "clinicflow-fanout"
DEFAULT_CONCURRENCY_SLOTS = 4
# Prefect state types of a finished child run that did not complete.
FAILED_STATE_TYPES = frozenset({"FAILED", "CRASHED", "CANCELLED"})
_ATTEMPT_MARK = "#"


def child_key(run_key: str, partition: str, attempt: int = 0) -> str:
    """The idempotency key of a partition's child run: the same key never starts a second run."""
    base = f"{run_key}:{partition}"
    return base if attempt == 0 else f"{base}{_ATTEMPT_MARK}{attempt}"


def parse_child_key(run_key: str, key: str | None) -> tuple[str, int] | None:
    """(partition, attempt) of a key made by :func:`child_key` for ``run_key``, else None."""
    prefix = f"{run_key}:"
    if not key or not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    partition, mark, attempt = rest.rpartition(_ATTEMPT_MARK)
    if mark and attempt.isdigit():
        return partition, int(attempt)
    return rest, 0


@dataclass
class ChildRun:
    """What the parent knows of one child run (read back from the Prefect API)."""

    partition: str
    attempt: int
    flow_run_id: str
    state_type: str  # Prefect StateType value: SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, ...
    state_name: str = ""
    message: str = ""
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state_type == "COMPLETED" or self.state_type in FAILED_STATE_TYPES

    @property
    def failed(self) -> bool:
        return self.state_type in FAILED_STATE_TYPES


def latest_attempts(children: list[ChildRun]) -> dict[str, ChildRun]:
    """Per partition, the child run of the highest attempt."""
    latest: dict[str, ChildRun] = {}
    for child in children:
        if child.partition not in latest or child.attempt > latest[child.partition].attempt:
            latest[child.partition] = child
    return latest


def next_action(previous: ChildRun | None) -> tuple[str, int]:
    """What a (re)run does with a partition, and the attempt to start: start, keep, wait or retry."""
    if previous is None:
        return "start", 0
    if previous.state_type == "COMPLETED":
        return "keep", previous.attempt
    if previous.failed:
        return "retry", previous.attempt + 1
    return "wait", previous.attempt


def poll_delays(first: float = 1.0, factor: float = 1.5, cap: float = 10.0) -> Iterator[float]:
    """Seconds to sleep between polls of the children: growing, never above ``cap``."""
    if first <= 0 or factor < 1 or cap < first:
        raise ValueError(f"fan-out backoff: need 0 < first <= cap and factor >= 1 (got {first}, {factor}, {cap})")
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


def failed_children_message(children: dict[str, ChildRun], things: str) -> str | None:
    """``"N of M <things> failed: name (child run Crashed: message); ..."`` for the children (partition name ->
    finished child) that did not complete (the first five), or None when every one completed."""
    failed = [
        f"{name} (child run {c.state_name or c.state_type}{': ' + c.message[:200] if c.message else ''})"
        for name, c in sorted(children.items())
        if c.state_type != "COMPLETED"
    ]
    return failed_of(failed, len(children), things, limit=5)


def overhead_per_child(fanned_seconds: float, in_pod_seconds: float, children: int, workers: int) -> float:
    """Seconds each child run added over the in-pod run, with ``workers`` children running at a time."""
    if children < 1 or workers < 1:
        raise ValueError("fan-out overhead: need at least one child and one worker")
    return (fanned_seconds - in_pod_seconds) * workers / children
