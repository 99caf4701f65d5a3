"""The object-store clients every GCS and S3 read and write goes through (the emulator handled once, here)."""
from __future__ import annotations

import os
from typing import Any

EMULATOR_PROJECT = "clinicflow-emulator"


def storage_emulator_host() -> str | None:
    """The GCS emulator address when one is configured (tests, local runs)."""
    return os.environ.get("STORAGE_EMULATOR_HOST") or None


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
