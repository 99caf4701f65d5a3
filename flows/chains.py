"""The chain engine of the OpenDental flows: each table's next task submitted the moment its last one ended.

Wiring only. :class:`TierRun` is what a tier's run of chains shares: a
:class:`Chains` loop that runs continuations in the flow thread as groups of
futures finish (no polling, no tier barrier), the tables' start times, and
guards that turn an exception in a continuation into that table's failure
(never the flow thread's). The replication chain (flows/replication_chain.py)
and the load chain (flows/load_chain.py) are built on it; the task runner of
their flows is sized when a run starts (:class:`EnvSizedTaskRunner`).
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any, cast

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from clinicflow.core.errors import one_line

Futures = list[PrefectFuture[Any]]
Then = Callable[[Futures], None]


class EnvSizedTaskRunner(ThreadPoolTaskRunner[Any]):
    """A thread pool whose size is read (``workers()``) when a flow run starts, not when the flow is imported.

    Prefect duplicates a flow's task runner for every run; the duplicate reads the size again.
    """

    def __init__(self, workers: Callable[[], int]) -> None:
        super().__init__(max_workers=workers())
        self._workers = workers

    def duplicate(self) -> EnvSizedTaskRunner:
        return type(self)(self._workers)


def env_sized_task_runner(workers: Callable[[], int]) -> TaskRunner[PrefectFuture[Any]]:
    """An :class:`EnvSizedTaskRunner`, typed as ``@flow(task_runner=...)`` takes it.

    The cast covers a gap in Prefect's types: ``TaskRunner`` is invariant in its future type, so no
    ``ThreadPoolTaskRunner`` (``PrefectConcurrentFuture``) matches the decorator's ``TaskRunner[PrefectFuture]``.
    """
    return cast("TaskRunner[PrefectFuture[Any]]", EnvSizedTaskRunner(workers))


class Chains:
    """Runs continuations in the flow thread as groups of futures finish (no polling, no tier barrier)."""

    def __init__(self) -> None:
        self._done: queue.Queue[dict[str, Any]] = queue.Queue()
        self._open = 0

    def when_done(self, futures: Futures, then: Then) -> None:
        group = {"left": len(futures), "futures": futures, "then": then}
        self._open += 1
        if not futures:
            self._done.put(group)
            group["left"] = 1
            return
        for future in futures:
            future.add_done_callback(lambda _f: self._done.put(group))

    def run(self) -> None:
        while self._open:
            group = self._done.get()
            group["left"] -= 1
            if group["left"] > 0:
                continue
            self._open -= 1
            for future in group["futures"]:
                future.wait()
            group["then"](group["futures"])


def future_error(future: PrefectFuture[Any]) -> BaseException | str | None:
    """The exception of a future that did not complete, or None."""
    state = future.state
    if state.is_completed():
        return None
    try:
        future.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - reported per table
        return exc
    return f"{state.name}: {state.message or 'did not complete'}"


def error_text(error: BaseException | str) -> str:
    return error if isinstance(error, str) else one_line(error)


class TierRun:
    """The chains of one tier: subclasses record each table's outcome and say how a table fails."""

    def __init__(self, tier: int = 0) -> None:
        self.tier = tier
        self.chains = Chains()
        self.started: dict[str, float] = {}

    def fail(
        self, table: str, stage: str, error: BaseException | str, replication_info: dict[str, Any] | None = None
    ) -> None:
        raise NotImplementedError

    def _guarded(self, tables: list[str], stage: str, then: Then) -> Then:
        """``then``, but an exception in it fails only ``tables`` (recorded), never the flow thread and the run."""

        def run(futures: Futures) -> None:
            try:
                then(futures)
            except Exception as exc:  # noqa: BLE001 - recorded for these tables; the others go on
                for table in tables:
                    self.fail(table, stage, exc)

        return run

    def submit(self, tables: list[str], stage: str, start: Callable[[], None]) -> None:
        """Start a table's (or group's) chain; a failure to start fails those tables only."""
        self._guarded(tables, stage, lambda _futures: start())([])

    def when_done(self, table: str | list[str], stage: str, futures: Futures, then: Then) -> None:
        tables = [table] if isinstance(table, str) else table
        self.chains.when_done(futures, self._guarded(tables, stage, then))

    def after(self, futures: Futures) -> None:
        """Wait for ``futures`` before the tier ends, whatever they return (clean-up tasks)."""
        self.chains.when_done(futures, lambda fs: None)

    def run(self) -> None:
        """Until every chain started so far (and every step they start) has ended."""
        self.chains.run()
