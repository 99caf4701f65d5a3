"""Flows ``ingest_files`` and ``replay_dead_letters``: objects matching a wildcard → staged documents → Medical rows.

Wiring only (logic in :mod:`clinicflow.ingest`): resolve the blocks, create
the tables, count the matching objects (a listing pass: names only), then
stream the listing in batches through ``ingest-file-batch`` tasks (read,
stage, extract, commit), publish progress and a summary. Every readable
document is staged; the run ends Failed when its error rate (dead letters /
new items) is above ``max_error_rate`` (synthetic records: the run stops at
the batch that crossed it, unpublished).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Failed

from blocks.databases import PostgresServer
from blocks.resolve import ANALYTICS_BLOCK, resolve_block
from clinicflow.connectors.connections import connected
from clinicflow.connectors.objectstore.patterns import parse_location
from clinicflow.connectors.objectstore.stores import ObjectInfo, matching_objects
from clinicflow.core.logs import get_logger
from clinicflow.core.settings import ingest_prefix_deployment
from clinicflow.ingest import db as ingest_db
from clinicflow.ingest import partitions as ingest_partitions
from clinicflow.ingest.db import ensure_schema
from clinicflow.ingest.options import IngestFanOut, IngestRunOptions, ReextractOptions, ReplayOptions
from clinicflow.ingest.pipeline import IngestSettings, RunCounts, run_batches
from clinicflow.ingest.synthetic import SyntheticRecord, generate, parse_synthetic
from clinicflow.ingest.verdicts import error_rate_failure, ingest_summary_rows
from clinicflow.scaleout.fanout import failed_children_message
from flows.fanout_runner import child_slot, run_partitions
from flows.options_params import options_parameters, source_version
from flows.progress import RunProgress, artifact_key
from flows.runtime import flow_run_id
from tasks.ingest import file_batch_task, store_for_location, store_for_uri, synthetic_batch_task


def _ensure_tables(server: PostgresServer, schema: str) -> None:
    with connected(server) as conn:
        ensure_schema(conn, schema)


@flow(name="ingest-files", version=source_version(__file__))
@options_parameters(database_block=ANALYTICS_BLOCK)
def ingest_files(pattern: str, options: IngestRunOptions, fan_out: IngestFanOut) -> Any:
    """Ingest the objects matching ``pattern`` (``s3://b/a/**/*.txt``, ``gs://…``, a local path, ``synthetic://…``).

    Documents and Medical rows go to ``ingest_schema`` in the ``database_block``
    database; failures to ``<ingest_schema>.dead_letters``.

    ``mode="fanout"`` (object patterns): the listing is split into about ``partitions`` groups of
    prefixes, each ingested by a child run of deployment ``ingest-files-prefix`` (``fanout_width`` at a
    time) under the run id ``run_key`` (default: this flow run's id; rerun with it to redo only failed
    partitions). ``max_error_rate`` then applies within each child. Parameters besides ``pattern``: the
    fields of :class:`IngestRunOptions` and :class:`IngestFanOut` (a bad value fails the run before any work).
    """
    started = time.monotonic()
    location = parse_location(pattern)
    if fan_out.fans_out:
        if location.scheme == "synthetic":
            raise ValueError("ingest_files: mode='fanout' needs an object pattern (s3://, gs://, a path)")
        return _fan_out_prefixes(pattern, options, fan_out, started)
    settings = options.settings(flow_run_id())
    server = resolve_block(options.database_block, PostgresServer)
    _ensure_tables(server, options.ingest_schema)
    return recorded_run(
        server,
        options.ingest_schema,
        settings.run_id,
        pattern,
        "in-pod",
        lambda: _ingest_in_pod(server, location, pattern, settings, options, started),
    )


def recorded_run(server: Any, schema: str, run_id: str, pattern: str, mode: str, body: Callable[[], Any]) -> Any:
    """Run ``body`` between the run row's start and finish in ``<schema>.runs`` (what `clinicflow status` reads)."""
    with connected(server) as conn:
        ingest_db.start_ingest_run(conn, schema, run_id, pattern, mode)
    failed, counts, message = True, None, None
    try:
        outcome = body()
        failed = isinstance(outcome, State) and outcome.is_failed()
        counts = outcome if isinstance(outcome, dict) else None
        message = outcome.message if isinstance(outcome, State) else None
        return outcome
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"[:1000]
        raise
    finally:
        with connected(server) as conn:
            ingest_db.finish_ingest_run(conn, schema, run_id, failed=failed, counts=counts, message=message)


def _ingest_in_pod(
    server: Any, location: Any, pattern: str, settings: IngestSettings, options: IngestRunOptions, started: float
) -> Any:
    log = get_logger("clinicflow.ingest")
    items: Iterator[SyntheticRecord | ObjectInfo]
    if location.scheme == "synthetic":
        kind, count, synthetic_seed = parse_synthetic(location)
        total, items = count, generate(kind, count, synthetic_seed)

        def process(batch: list[Any], before: RunCounts) -> RunCounts:
            return synthetic_batch_task(server, batch, settings, before)
    else:
        store = store_for_location(location, options.s3_block)
        total = sum(1 for _ in matching_objects(store, location))
        items = matching_objects(store, location)

        def process(batch: list[Any], before: RunCounts) -> RunCounts:
            return file_batch_task(
                server, location, options.s3_block, batch, settings, options.extractor, options.llm_block, before
            )

    log.info("ingest %s: %d item(s) match; run %s", pattern, total, settings.run_id)
    progress = RunProgress(
        total, key=artifact_key("ingest", location.scheme, location.bucket, "progress"), description=f"ingest {pattern}"
    )
    try:
        counts = run_batches(items, options.batch_size, process, on_batch=lambda c: progress.advance(c.listed))
    finally:
        progress.close()
    seconds = time.monotonic() - started
    create_table_artifact(
        ingest_summary_rows(pattern, counts, seconds),
        key=artifact_key("ingest", location.scheme, location.bucket, "summary"),
        description=f"ingest {pattern}: {counts.staged} staged, {counts.skipped} unchanged, "
        f"{counts.extracted} extracted, {counts.failures + counts.set_aside} dead-lettered",
    )
    log.info("ingest %s: %s", pattern, counts.as_dict())
    failure = error_rate_failure(counts, options.max_error_rate)
    if failure is not None:
        return Failed(message=failure)
    return {"pattern": pattern, "run_id": settings.run_id, **counts.as_dict(), "seconds": round(seconds, 2)}


def _fan_out_prefixes(pattern: str, options: IngestRunOptions, fan_out: IngestFanOut, started: float) -> Any:
    """Each prefix partition as a child run; the run's counts read back from PostgreSQL."""
    location = parse_location(pattern)
    run_id = fan_out.run_key or flow_run_id()
    server = resolve_block(options.database_block, PostgresServer)
    _ensure_tables(server, options.ingest_schema)
    return recorded_run(
        server,
        options.ingest_schema,
        run_id,
        pattern,
        "fanout",
        lambda: _fan_out_recorded(server, location, pattern, options, fan_out, run_id, started),
    )


def _fan_out_recorded(
    server: Any,
    location: Any,
    pattern: str,
    options: IngestRunOptions,
    fan_out: IngestFanOut,
    run_id: str,
    started: float,
) -> Any:
    store = store_for_location(location, options.s3_block)
    listed = [0]

    def keys() -> Any:
        for info in matching_objects(store, location):
            listed[0] += 1
            yield info.key

    groups = ingest_partitions.plan_prefix_partitions(keys(), location.prefix, fan_out.partitions)
    get_logger("clinicflow.ingest").info("ingest %s: %d prefix partition(s); run %s", pattern, len(groups), run_id)
    # The options whole: each child validates them again as its own parameter.
    child_options = options.model_dump(mode="json")
    parameters = {
        ingest_partitions.partition_name(i, g): {
            "pattern": pattern,
            "prefixes": g,
            "run_id": run_id,
            "options": child_options,
        }
        for i, g in enumerate(groups)
    }
    children = (
        run_partitions(ingest_prefix_deployment(), run_id, parameters, width=fan_out.fanout_width) if parameters else {}
    )
    failed = failed_children_message(children, "prefix partitions")
    with connected(server) as conn:
        counts = ingest_partitions.recorded_ingest_counts(conn, options.ingest_schema, run_id, listed=listed[0])
    seconds = time.monotonic() - started
    create_table_artifact(
        ingest_summary_rows(pattern, counts, seconds),
        key=artifact_key("ingest", location.scheme, location.bucket, "summary"),
        description=f"ingest {pattern} (fan-out, {len(groups)} partitions): {counts.staged} staged, "
        f"{counts.extracted} extracted, {counts.failures + counts.set_aside} dead-lettered",
    )
    if failed is not None:
        return Failed(message=failed)
    return {
        "pattern": pattern,
        "run_id": run_id,
        "partitions": len(groups),
        "staged": counts.staged,
        "extracted": counts.extracted,
        "dead_lettered": counts.failures + counts.set_aside,
        "seconds": round(seconds, 2),
    }


@flow(name="ingest-files-prefix")
def ingest_files_prefix(pattern: str, prefixes: list[str], run_id: str, options: IngestRunOptions) -> Any:
    """One prefix partition of a fanned-out ``ingest_files`` (deployment ``ingest-files-prefix``).

    Ingests the objects matching ``pattern`` whose group (first folder after the pattern's literal prefix)
    is in ``prefixes``, exactly as the in-pod run does, with the parent's ``options`` under its ``run_id``,
    holding one slot of the global concurrency limit. Failed when its error rate went above
    ``options.max_error_rate``.
    """
    options = IngestRunOptions.model_validate(options)  # a dict when called without Prefect's validation
    location = parse_location(pattern)
    settings = options.settings(run_id)
    server = resolve_block(options.database_block, PostgresServer)
    store = store_for_location(location, options.s3_block)

    def process(batch: list[Any], before: RunCounts) -> RunCounts:
        return file_batch_task(
            server, location, options.s3_block, batch, settings, options.extractor, options.llm_block, before
        )

    with child_slot():
        counts = run_batches(
            ingest_partitions.objects_in_groups(store, location, prefixes), options.batch_size, process
        )
    failure = error_rate_failure(counts, options.max_error_rate)
    if failure is not None:
        return Failed(message=failure)
    # A small pointer: the results are in PostgreSQL.
    return {"run_id": run_id, "prefixes": len(prefixes), **counts.as_dict()}


@flow(name="ingest-replay-dead-letters", version=source_version(__file__))
@options_parameters(database_block=ANALYTICS_BLOCK)
def replay_dead_letters(options: ReplayOptions) -> Any:
    """Replay open dead letters (all, or by ids / stage / reason / run). Failed when some stay open.

    Each letter goes back to the extractor that produced it unless ``extractor`` names one. Parameters: the
    fields of :class:`clinicflow.ingest.options.ReplayOptions` (a bad value fails the run before any work).
    """
    from clinicflow.ingest.deadletter import replay
    from tasks.ingest import extractor_cache, make_extractor

    server = resolve_block(options.database_block, PostgresServer)
    settings = options.settings(flow_run_id())
    extractor, llm_block, s3_block = options.extractor, options.llm_block, options.s3_block
    result = replay(
        server,
        settings,
        ids=options.ids,
        stage=options.stage,
        reason=options.reason,
        run_id=options.run_id,
        store_for=lambda uri: store_for_uri(uri, s3_block),
        extractor=make_extractor(extractor, llm_block) if extractor is not None else None,
        extractor_for=extractor_cache(llm_block),
    )
    summary = {
        "attempted": result.attempted,
        "replayed": result.replayed,
        "still_open": result.still_open,
        **{f"stage {k}": v for k, v in sorted(result.by_stage.items())},
    }
    create_table_artifact(
        [{"metric": k, "value": v} for k, v in summary.items()],
        key=artifact_key("ingest", "replay", "summary"),
        description=f"dead-letter replay: {result.replayed} of {result.attempted} replayed",
    )
    if result.still_open:
        return Failed(
            message=f"{result.still_open} of {result.attempted} dead letter(s) failed again "
            f"(still open, attempts increased): {'; '.join(result.failed_again)}"
            + (" ..." if result.still_open > len(result.failed_again) else "")
        )
    return summary


@flow(name="ingest-reextract", version=source_version(__file__))
@options_parameters(database_block=ANALYTICS_BLOCK)
def reextract_documents(options: ReextractOptions) -> Any:
    """Extract staged documents again (all, staged since ``since``, uri LIKE ``uri_like``) with ``extractor``.

    Each document version keeps one Medical row, replaced by the new extractor's (idempotent). Failed when
    some documents were dead-lettered (their previous rows stay). Parameters: the fields of
    :class:`clinicflow.ingest.options.ReextractOptions` (a bad value fails the run before any work).
    """
    from tasks.ingest import make_extractor, reextract_task

    extractor = options.extractor
    chosen = make_extractor(extractor, options.llm_block)
    if chosen is None:  # the options refuse "none": kept for the type checker
        raise ValueError("reextract: extractor must be rules or llm")
    server = resolve_block(options.database_block, PostgresServer)
    _ensure_tables(server, options.ingest_schema)
    counts = reextract_task(
        server,
        options.ingest_schema,
        chosen,
        flow_run_id(),
        since=options.since_time(),
        uri_like=options.uri_like,
        batch_size=options.batch_size,
    )
    summary = {
        "extractor": extractor,
        "documents": counts.documents,
        "extracted": counts.extracted,
        "from_cache": counts.from_cache,
        "dead_lettered": sum(counts.dead_lettered.values()),
        **{f"dead-lettered {k}": n for k, n in sorted(counts.dead_lettered.items())},
    }
    create_table_artifact(
        [{"metric": k, "value": v} for k, v in summary.items()],
        key=artifact_key("ingest", "reextract", "summary"),
        description=f"re-extraction ({extractor}): {counts.extracted} of {counts.documents}",
    )
    if counts.dead_lettered:
        reasons = ", ".join(f"{k}={n}" for k, n in sorted(counts.dead_lettered.items()))
        return Failed(
            message=f"{sum(counts.dead_lettered.values())} of {counts.documents} document(s) dead-lettered: {reasons}"
        )
    return summary
