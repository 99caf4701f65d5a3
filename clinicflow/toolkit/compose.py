"""Composition: ``etl``, ``el``, ``step``, ``sequential``, ``parallel``, ``conditional``, ``retry``.

A pipeline's steps form a tree. Leaves are units of work that each run as one
Prefect task (own state, retries, logs); ``etl``/``el`` leaves stream their
batches inside the task, so memory stays bounded by the batch size. Inner
nodes are control flow, run by :func:`execute` with a leaf runner: the
Prefect wiring (``flows/pipeline.py``) passes one that calls a task, tests may
pass :func:`run_leaf_plain`.

Error semantics:

* ``sequential(stop_on_error=True)`` (the default): the first failed step
  stops the sequence; the steps after it are reported ``skipped``. With
  ``stop_on_error=False`` every step runs.
* ``parallel(max_workers=N, stop_on_error=False)`` (the default): at most N
  children at once; all run. With ``stop_on_error=True``, children not yet
  started when one fails are ``skipped`` (running ones finish).
* ``conditional(predicate, then, otherwise)``: the branch not taken is
  ``skipped``; a predicate that raises is a failed step and both branches are
  skipped.
* ``retry(step, retries, delay_seconds, on)``: every leaf under ``step`` is
  retried up to ``retries`` times, on any error or only transient ones
  (``clinicflow.core.retry``'s classification).

Whatever the nesting, the pipeline run ends Failed when any step failed.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from clinicflow.core.retry import RetryPolicy, backoff_delays, call_with_retry, is_transient
from clinicflow.toolkit.base import Batch, RunContext, ToolkitError
from clinicflow.toolkit.configs import built, extractor_of, loader_of, transformer_of
from clinicflow.toolkit.transform import TypeConverter


@dataclass(frozen=True)
class Leaf:
    """One unit of work: ``run(ctx)`` is called as one task."""

    name: str
    run: Callable[[RunContext], Any]
    retries: int = 0
    retry_delay_seconds: float | list[float] = 0.0
    retry_on: Literal["any", "transient"] = "any"
    # (role, config) of an etl/el leaf's tools: checked at load time, printed by `pipelines show`.
    configs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Sequential:
    steps: tuple[Step, ...]
    stop_on_error: bool = True
    name: str = "sequential"


@dataclass(frozen=True)
class Parallel:
    steps: tuple[Step, ...]
    max_workers: int = 4
    stop_on_error: bool = False
    name: str = "parallel"


@dataclass(frozen=True)
class Conditional:
    predicate: Callable[[RunContext], bool]
    then: Step
    otherwise: Step | None = None
    name: str = "conditional"


Step = Leaf | Sequential | Parallel | Conditional


@dataclass
class StepOutcome:
    name: str
    status: Literal["completed", "failed", "skipped"]
    result: Any = None
    error: str | None = None


@dataclass
class EtlReport:
    """What an etl/el leaf did: rows read from the extractor, written by the loader, sent to dead letters."""

    rows_read: int = 0
    rows_written: int = 0
    dead_letters: int = 0
    details: dict[str, Any] = field(default_factory=dict)


class DeadLettersWritten(ToolkitError):
    """Rows went to the dead-letter sink: the good rows are loaded, the step still fails so the run shows it."""


def _counted(batches: Iterable[Batch], report: EtlReport) -> Iterator[Batch]:
    for batch in batches:
        report.rows_read += len(batch)
        yield batch


def etl(
    name: str, *, extract: Any, load: Any, transform: Sequence[Any] = (), fail_on_dead_letters: bool = True
) -> Leaf:
    """Extract -> transformers -> load as one streamed leaf; tools may be configs, dicts or tool objects."""
    extractor = extractor_of(extract)
    transformers = [transformer_of(t) for t in transform]
    loader = loader_of(load)

    def run(ctx: RunContext) -> EtlReport:
        ctx = dataclasses.replace(ctx, step=name)  # dead letters name this step, whatever branch runs it
        report = EtlReport()
        tools = [built(t, ctx) for t in transformers]
        batches: Iterable[Batch] = _counted(built(extractor, ctx).extract(ctx), report)
        for tool in tools:
            batches = _transformed(tool, batches, ctx)
        report.rows_written = built(loader, ctx).load(batches, ctx)
        converters = [t for t in tools if isinstance(t, TypeConverter)]
        report.dead_letters = sum(t.rejected for t in converters)
        ctx.logger.info(
            "%s: read %d rows, wrote %d, %d to dead letters",
            name,
            report.rows_read,
            report.rows_written,
            report.dead_letters,
        )
        if report.dead_letters and fail_on_dead_letters:
            over = [t for t in converters if t.rejected and t.rejected > t.max_rejected_fraction * t.rows_seen]
            if over:
                worst = over[0]
                raise DeadLettersWritten(
                    f"{name}: {report.dead_letters} rows went to dead letters ({report.rows_written} rows loaded); "
                    f"{worst.rejected} of {worst.rows_seen} is above max_rejected_fraction "
                    f"{worst.max_rejected_fraction:g}"
                )
            ctx.logger.warning(
                "%s: %d of %d rows went to dead letters, within max_rejected_fraction",
                name,
                report.dead_letters,
                report.rows_read,
            )
        return report

    described = [("extract", extractor)] + [(f"transform[{i}]", t) for i, t in enumerate(transformers)]
    return Leaf(name, run, configs=tuple((role, tool) for role, tool in [*described, ("load", loader)]))


def _transformed(tool: Any, batches: Iterable[Batch], ctx: RunContext) -> Iterator[Batch]:
    for batch in batches:
        yield tool.transform(batch, ctx)


def el(name: str, *, extract: Any, load: Any) -> Leaf:
    """Extract -> load, no transformation."""
    return etl(name, extract=extract, load=load)


def step(name: str, function: Callable[[RunContext], Any]) -> Leaf:
    """A plain function as a leaf (DDL, a refresh, a check)."""
    return Leaf(name, function)


def sequential(*steps: Step, stop_on_error: bool = True, name: str = "sequential") -> Sequential:
    return Sequential(tuple(steps), stop_on_error, name)


def parallel(*steps: Step, max_workers: int = 4, stop_on_error: bool = False, name: str = "parallel") -> Parallel:
    if max_workers < 1:
        raise ToolkitError(f"{name}: max_workers must be at least 1")
    return Parallel(tuple(steps), max_workers, stop_on_error, name)


def conditional(
    predicate: Callable[[RunContext], bool], then: Step, otherwise: Step | None = None, *, name: str = "conditional"
) -> Conditional:
    return Conditional(predicate, then, otherwise, name)


def retry(
    inner: Step,
    retries: int = 3,
    *,
    delay_seconds: float | list[float] | None = None,
    on: Literal["any", "transient"] = "any",
) -> Step:
    """Give every leaf under ``inner`` ``retries`` retries (default delays: clinicflow.core.retry's backoff)."""
    delays = delay_seconds if delay_seconds is not None else backoff_delays(retries)
    if isinstance(inner, Leaf):
        return dataclasses.replace(inner, retries=retries, retry_delay_seconds=delays, retry_on=on)
    if isinstance(inner, Conditional):
        return dataclasses.replace(
            inner,
            then=retry(inner.then, retries, delay_seconds=delays, on=on),
            otherwise=None if inner.otherwise is None else retry(inner.otherwise, retries, delay_seconds=delays, on=on),
        )
    return dataclasses.replace(inner, steps=tuple(retry(s, retries, delay_seconds=delays, on=on) for s in inner.steps))


def leaves(node: Step) -> list[Leaf]:
    if isinstance(node, Leaf):
        return [node]
    if isinstance(node, Conditional):
        return leaves(node.then) + (leaves(node.otherwise) if node.otherwise is not None else [])
    return [leaf for child in node.steps for leaf in leaves(child)]


LeafRunner = Callable[[Leaf, RunContext], StepOutcome]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run_leaf_plain(leaf: Leaf, ctx: RunContext, *, sleep: Callable[[float], None] = time.sleep) -> StepOutcome:
    """Run a leaf in this thread with its retries (no Prefect)."""
    delays = leaf.retry_delay_seconds if isinstance(leaf.retry_delay_seconds, list) else [leaf.retry_delay_seconds]
    policy = RetryPolicy(
        retries=leaf.retries,
        fixed_delays=tuple(delays),
        retry_on=(lambda exc: True) if leaf.retry_on == "any" else is_transient,
    )
    try:
        return StepOutcome(
            leaf.name,
            "completed",
            call_with_retry(lambda: leaf.run(ctx), what=f"step {leaf.name}", policy=policy, sleep=sleep),
        )
    except Exception as exc:  # noqa: BLE001 - reported as the step's outcome
        return StepOutcome(leaf.name, "failed", error=_describe(exc))


def _skipped(node: Step, why: str) -> list[StepOutcome]:
    return [StepOutcome(leaf.name, "skipped", error=why) for leaf in leaves(node)]


def execute(node: Step, ctx: RunContext, run_leaf: LeafRunner = run_leaf_plain) -> list[StepOutcome]:
    """Run the tree; one outcome per leaf (and per failed predicate), in tree order."""
    if isinstance(node, Leaf):
        outcome = run_leaf(node, ctx)
        if outcome.status == "completed":
            ctx.results[node.name] = outcome.result
        return [outcome]
    if isinstance(node, Sequential):
        outcomes: list[StepOutcome] = []
        for i, child in enumerate(node.steps):
            outcomes.extend(execute(child, ctx, run_leaf))
            if node.stop_on_error and any(o.status == "failed" for o in outcomes):
                for rest in node.steps[i + 1 :]:
                    outcomes.extend(_skipped(rest, f"{node.name}: an earlier step failed"))
                break
        return outcomes
    if isinstance(node, Parallel):
        failed = threading.Event()

        def branch(child: Step) -> list[StepOutcome]:
            if node.stop_on_error and failed.is_set():
                return _skipped(child, f"{node.name}: a parallel step failed")
            result = execute(child, ctx, run_leaf)
            if any(o.status == "failed" for o in result):
                failed.set()
            return result

        with ThreadPoolExecutor(max_workers=node.max_workers, thread_name_prefix="toolkit") as pool:
            # Each branch runs in a copy of this context, so Prefect sees its tasks inside this flow run.
            futures = [pool.submit(contextvars.copy_context().run, branch, child) for child in node.steps]
            return [o for f in futures for o in f.result()]
    if isinstance(node, Conditional):
        try:
            chosen = bool(node.predicate(ctx))
        except Exception as exc:  # noqa: BLE001 - reported as the step's outcome
            out = [StepOutcome(node.name, "failed", error=f"predicate: {_describe(exc)}")]
            out += _skipped(node.then, f"{node.name}: predicate failed")
            if node.otherwise is not None:
                out += _skipped(node.otherwise, f"{node.name}: predicate failed")
            return out
        taken, other = (node.then, node.otherwise) if chosen else (node.otherwise, node.then)
        out = execute(taken, ctx, run_leaf) if taken is not None else []
        if other is not None:
            out += _skipped(other, f"{node.name}: branch not taken")
        return out
    raise ToolkitError(f"not a step: {type(node).__name__}")


def check_step_names(node: Step) -> None:
    """Leaf names must be unique in a pipeline: results and task names are keyed by them."""
    seen: set[str] = set()
    for leaf in leaves(node):
        if leaf.name in seen:
            raise ToolkitError(f"two steps are named {leaf.name!r}; step names must be unique in a pipeline")
        seen.add(leaf.name)
