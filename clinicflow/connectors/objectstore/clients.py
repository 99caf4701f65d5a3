"""The object-store clients every GCS and S3 read and write goes through (the emulator handled once, here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinicflow.core import settings
from clinicflow.core.retry import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:
    from clinicflow.connectors.objectstore.stores import ObjectStore

EMULATOR_PROJECT = "clinicflow-emulator"


def storage_emulator_host() -> str | None:
    """The GCS emulator address when one is configured (tests, local runs)."""
    return settings.storage_emulator()


def gcs_client(credentials: Any | None = None, project: str | None = None) -> Any:
    """The ``google.cloud.storage.Client`` for every GCS read and write in clinicflow.

    Against the emulator: anonymous credentials. Otherwise the block's
    ``GcpCredentials`` when given, else Application Default Credentials.
    """
    from google.cloud import storage  # type: ignore[attr-defined]  # google-cloud-storage ships no stubs

    if storage_emulator_host():
        from google.auth.credentials import AnonymousCredentials

        project = project or getattr(credentials, "project", None) or EMULATOR_PROJECT
        return storage.Client(credentials=AnonymousCredentials(), project=project)  # type: ignore[no-untyped-call]
    if credentials is not None:
        return credentials.get_cloud_storage_client(project=project)
    return storage.Client(project=project)


def s3_client(block: Any | None = None) -> Any:
    """The boto3 S3 client: the block's credentials, else boto3's defaults (``AWS_*`` env vars)."""
    if block is not None:
        return block.credentials.get_s3_client()
    import boto3

    return boto3.session.Session().client("s3")


def store_for_block(block: Any, retry: RetryPolicy = DEFAULT_POLICY) -> ObjectStore:
    """The store of a bucket block (``LocalFolderBucket``, ``GcsBucket`` or ``S3Bucket``)."""
    from clinicflow.connectors.objectstore.stores import GcsStore, LocalStore, S3Store

    kind = type(block).__name__
    if kind == "LocalFolderBucket":
        return LocalStore(Path(block.path).resolve())
    if kind == "GcsBucket":
        return GcsStore(gcs_client(block.gcp_credentials), block.bucket, block.bucket_folder, retry=retry)
    if kind == "S3Bucket":
        return S3Store(s3_client(block), block.bucket_name, block.bucket_folder, retry=retry)
    raise TypeError(f"unsupported bucket block type {kind}")
