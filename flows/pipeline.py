"""Prefect wiring of the pipeline toolkit: a pipeline spec runs as one flow, each leaf step as one task.

``run_pipeline`` (flow ``toolkit-pipeline``) is the entrypoint of every
pipeline deployment: it discovers the pipeline by name and runs it.
``compile_flow(spec)`` gives a flow named after the pipeline for running a
spec object directly. The logic (tools, composition, error semantics) lives
in :mod:`clinicflow.toolkit`; this module only maps leaves to tasks, records
the outcome table as an artifact and fails the run when a step failed.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from prefect import Flow, flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from clinicflow.core.retry import retry_on_transient
from clinicflow.core.verdicts import failed_of, shortened
from clinicflow.toolkit.base import RunContext, ToolkitError, new_run_id
from clinicflow.toolkit.compose import EtlReport, Leaf, StepOutcome, execute
from clinicflow.toolkit.discovery import discover
from clinicflow.toolkit.spec import PipelineSpec, unused_parameters

PIPELINE_FLOW_NAME = "toolkit-pipeline"


class PipelineFailed(ToolkitError):
    """At least one step failed; the message names each failed step."""


def resolve_connection(dialect: str, name: str) -> Any:
    """A database block (``mysql``/``postgres``) or a bucket writer (``bucket:local|gcs|s3``) by block name."""
    from blocks.databases import MySQLServer, PostgresServer
    from blocks.resolve import resolve_block

    if dialect.startswith("bucket:"):
        from blocks.buckets import resolve_bucket
        from clinicflow.connectors.objectstore.clients import store_for_block

        return store_for_block(resolve_bucket(dialect.partition(":")[2], name))
    if dialect == "mysql":
        return resolve_block(name, MySQLServer)
    if dialect == "postgres":
        return resolve_block(name, PostgresServer)
    raise ToolkitError(f"unknown connection dialect {dialect!r} for {name!r}")


def run_leaf_as_task(leaf: Leaf, ctx: RunContext) -> StepOutcome:
    """Run one leaf as a Prefect task with its retries; the task's final state becomes the outcome."""

    def call() -> Any:
        return leaf.run(dataclasses.replace(ctx, logger=get_run_logger()))

    retry_condition = retry_on_transient if leaf.retry_on == "transient" else None
    step_task = task(
        name=leaf.name,
        retries=leaf.retries,
        retry_delay_seconds=leaf.retry_delay_seconds,
        retry_condition_fn=retry_condition,
        cache_policy=NO_CACHE,
        persist_result=False,
    )(call)
    state = step_task(return_state=True)
    if state.is_completed():
        return StepOutcome(leaf.name, "completed", state.result())
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the outcome carries the failure
        return StepOutcome(leaf.name, "failed", error=f"{type(exc).__name__}: {exc}")
    return StepOutcome(leaf.name, "failed", error=f"task ended {state.type.value}")


def _scheduled_time() -> datetime:
    from prefect.runtime import flow_run

    scheduled = flow_run.scheduled_start_time
    if not isinstance(scheduled, datetime):
        return datetime.now(UTC)
    # Prefect hands a pendulum DateTime; the time scope does plain datetime arithmetic.
    return datetime.fromtimestamp(scheduled.timestamp(), UTC)


def run_context(
    spec: PipelineSpec, parameters: dict[str, Any] | None, start: datetime | None, end: datetime | None
) -> RunContext:
    """Merge parameters over the spec's defaults (unknown names are an error) and settle the time scope."""
    merged = spec.merged_parameters(parameters)
    if spec.timescope is not None and (start is None or end is None):
        default_start, default_end = spec.timescope.default_range(_scheduled_time())
        start, end = start or default_start, end or default_end
    from prefect.runtime import flow_run

    run_id = str(flow_run.id) if flow_run.id else new_run_id()
    return RunContext(
        pipeline=spec.name,
        run_id=run_id,
        parameters=merged,
        start=start,
        end=end,
        connections=resolve_connection,
        logger=get_run_logger(),
    )


def _outcome_row(outcome: StepOutcome) -> dict[str, Any]:
    report = outcome.result if isinstance(outcome.result, EtlReport) else None
    return {
        "step": outcome.name,
        "status": outcome.status,
        "rows_read": report.rows_read if report else None,
        "rows_written": report.rows_written if report else None,
        "dead_letters": report.dead_letters if report else None,
        "error": (outcome.error or "")[:500],
    }


def run_spec(
    spec: PipelineSpec,
    parameters: dict[str, Any] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict[str, Any]]:
    """Run ``spec``'s steps inside the current flow run; raise PipelineFailed when any step failed."""
    ctx = run_context(spec, parameters, start, end)
    unused = unused_parameters(spec)
    if unused:
        ctx.logger.warning("%s: parameters %s are declared but no step's config uses them", spec.name, unused)
    if ctx.start is not None:
        ctx.logger.info(
            "%s: time scope %s -> %s", spec.name, ctx.start.isoformat(), ctx.end.isoformat() if ctx.end else ""
        )
    outcomes = execute(spec.steps, ctx, run_leaf_as_task)
    rows = [_outcome_row(o) for o in outcomes]
    create_table_artifact(
        table=rows, key=f"pipeline-{spec.name.replace('_', '-')}", description=f"Steps of pipeline {spec.name}"
    )
    failure = failed_of(
        [f"{o.name}: {shortened(o.error or '', 300)}" for o in outcomes if o.status == "failed"], len(outcomes), "steps"
    )
    if failure is not None:
        skipped = sum(o.status == "skipped" for o in outcomes)
        raise PipelineFailed(f"pipeline {spec.name}: {failure}; {skipped} skipped")
    return rows


@flow(name=PIPELINE_FLOW_NAME, flow_run_name="{pipeline}", validate_parameters=True)
def run_pipeline(
    pipeline: str,
    parameters: dict[str, Any] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    folder: str | None = None,
) -> list[dict[str, Any]]:
    """Run the discovered pipeline ``pipeline`` (from ``folder`` or the default pipelines folder)."""
    discovery = discover(folder)
    for error in discovery.errors:
        get_run_logger().warning("pipeline discovery: %s: %s", error.origin, error.message)
    return run_spec(discovery.get(pipeline), parameters, start, end)


def compile_flow(spec: PipelineSpec) -> Flow[..., list[dict[str, Any]]]:
    """A flow named after the pipeline that runs ``spec`` (tests, ad-hoc runs of a spec object)."""

    def pipeline_flow(
        parameters: dict[str, Any] | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        return run_spec(spec, parameters, start, end)

    return flow(name=spec.name, description=spec.description or None)(pipeline_flow)
