"""Prefect tasks of the ingestion flow: thin wrappers over :mod:`clinicflow.ingest`.

Also the two builders the flow and the CLI share: :func:`store_for_location`
(object-store clients from ``blocks.buckets``, so a custom S3 endpoint comes
from ``AWS_ENDPOINT_URL`` or the S3 block) and :func:`make_extractor`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.databases import PostgresServer
from clinicflow.connectors.objectstore.patterns import Location
from clinicflow.connectors.objectstore.stores import GcsStore, LocalStore, ObjectInfo, ObjectStore, S3Store
from clinicflow.core.retry import TASK_RETRY, RetryPolicy
from clinicflow.ingest.extractors import DocumentExtractor, LLMExtractor, RulesExtractor
from clinicflow.ingest.options import EXTRACTORS
from clinicflow.ingest.pipeline import IngestSettings, RunCounts, process_file_batch
from clinicflow.ingest.reextract import ReextractCounts, reextract
from clinicflow.ingest.synthetic import SyntheticRecord, load_records


def store_for_location(location: Location, s3_block: str | None = None) -> ObjectStore:
    """The store a location lists from; S3 credentials/endpoint from ``s3_block`` or the ``AWS_*`` variables."""
    if location.scheme == "file":
        return LocalStore(location.bucket)
    if location.scheme == "s3":
        from blocks.buckets import resolve_bucket
        from clinicflow.connectors.objectstore.clients import s3_client

        return S3Store(s3_client(resolve_bucket("s3", s3_block) if s3_block else None), location.bucket)
    if location.scheme == "gs":
        from clinicflow.connectors.objectstore.clients import gcs_client

        return GcsStore(gcs_client(), location.bucket)
    raise ValueError(f"no object store for {location.scheme}://")


def store_for_uri(uri: str, s3_block: str | None = None) -> tuple[ObjectStore, str]:
    """(store, key) of one object uri (``file://``, ``s3://``, ``gs://``): for dead-letter replays."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        path = Path(unquote(urlsplit(uri).path))
        return LocalStore(path.parent), path.name
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    return store_for_location(Location(scheme, bucket, key), s3_block), key


def make_extractor(kind: str, llm_block: str | None = None) -> DocumentExtractor | None:
    """``rules`` (offline), ``llm`` (the OpenAI-compatible block) or ``none`` (stage only)."""
    if kind == "none":
        return None
    if kind == "rules":
        return RulesExtractor()
    if kind == "llm":
        from blocks.llm import INGEST_LLM_BLOCK, resolve_llm

        llm = resolve_llm(llm_block or INGEST_LLM_BLOCK)
        return LLMExtractor(llm.client(), llm.model, batch_size=llm.batch_size, retry=RetryPolicy(retries=llm.retries))
    raise ValueError(f"extractor must be one of {', '.join(EXTRACTORS)}, not {kind!r}")


def extractor_cache(llm_block: str | None = None) -> Callable[[str], DocumentExtractor | None]:
    """``kind -> extractor``, each built once (a replay meets the same kinds many times)."""
    built: dict[str, DocumentExtractor | None] = {}

    def get(kind: str) -> DocumentExtractor | None:
        if kind not in built:
            built[kind] = make_extractor(kind, llm_block)
        return built[kind]

    return get


@task(name="ingest-reextract", cache_policy=NO_CACHE)
def reextract_task(
    server: PostgresServer,
    schema: str,
    extractor: DocumentExtractor,
    run_id: str,
    *,
    since: datetime | None,
    uri_like: str | None,
    batch_size: int,
) -> ReextractCounts:
    return reextract(server, schema, extractor, run_id, since=since, uri_like=uri_like, batch_size=batch_size)


@task(name="ingest-file-batch", cache_policy=NO_CACHE, **TASK_RETRY)
def file_batch_task(
    server: PostgresServer,
    location: Location,
    s3_block: str | None,
    objects: list[ObjectInfo],
    settings: IngestSettings,
    extractor_kind: str,
    llm_block: str | None,
    before: RunCounts,
) -> RunCounts:
    return process_file_batch(
        server,
        store_for_location(location, s3_block),
        objects,
        settings,
        make_extractor(extractor_kind, llm_block),
        before,
    )


@task(name="ingest-synthetic-batch", cache_policy=NO_CACHE, **TASK_RETRY)
def synthetic_batch_task(
    server: PostgresServer, records: list[SyntheticRecord], settings: IngestSettings, before: RunCounts
) -> RunCounts:
    return load_records(server, records, settings, before)
