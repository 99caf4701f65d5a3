"""Bucket blocks for the DICOM reports output, and their environment builders.

Three kinds of bucket, chosen by the flow's ``bucket_kind`` parameter:

- ``local``: :class:`LocalFolderBucket` (defined here), a folder on disk —
  the embedded default (``./out/bucket``) for the demo and tests;
- ``gcs``: prefect-gcp's ``GcsBucket``;
- ``s3``: prefect-aws's ``S3Bucket``.

All three resolve through :func:`blocks.resolve.resolve_block`; this module
registers env builders into ``ENV_BUILDERS`` so that without a Prefect API
they are built from ``CLINICFLOW_<NAME>_*`` variables (see docs/dicom.md).

The GCS emulator (``STORAGE_EMULATOR_HOST``) needs anonymous credentials,
while prefect-gcp's ``GcpCredentials`` asks ``google.auth.default()`` for
real ones as soon as it is constructed or loaded. That is handled here and
nowhere else: :func:`gcs_client` gives the storage client every GCS caller
uses, and :func:`resolve_bucket` builds/loads bucket blocks with anonymous
default credentials while the emulator is configured.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.resolve import ENV_BUILDERS, env_prefix, resolve_block
from clinicflow.connectors.objectstore.clients import EMULATOR_PROJECT, storage_emulator_host
from clinicflow.core import secret_env, settings

BucketKind = Literal["local", "gcs", "s3"]

# Well-known block name of the DICOM output bucket.
DICOM_BUCKET_BLOCK = "dicom-reports-bucket"
DEFAULT_LOCAL_BUCKET_PATH = "./out/bucket"


class LocalFolderBucket(Block):
    """A folder used as a bucket: objects are files under ``path``."""

    _block_type_name = "clinicflow Local Folder Bucket"
    _block_type_slug = "clinicflow-local-folder-bucket"
    _description = "A local folder used as the output bucket (demo, tests, a mounted volume)."

    path: str = Field(default=DEFAULT_LOCAL_BUCKET_PATH, description="Folder that holds the objects.")


def _env(block_name: str, suffix: str) -> str | None:
    value = secret_env.getenv(env_prefix(block_name) + suffix)
    return value if value not in (None, "") else None


_adc_lock = threading.Lock()


@contextlib.contextmanager
def anonymous_adc_if_emulated() -> Iterator[None]:
    """While the GCS emulator is configured, make ``google.auth.default()`` anonymous.

    prefect-gcp's ``GcpCredentials.block_initialization`` calls
    ``google.auth.default()`` when the block is constructed or loaded; on a
    machine without Google credentials (CI, a laptop with the emulator) that
    raises before any request is made. Outside the emulator nothing changes.
    """
    if not storage_emulator_host():
        yield
        return
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    with _adc_lock:
        original = google.auth.default

        def anonymous_default(*_args: Any, **_kwargs: Any) -> tuple[Any, str]:
            # google-auth gap: Credentials.__init__ carries no annotations.
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
            return credentials, settings.google_cloud_project(EMULATOR_PROJECT)

        google.auth.default = anonymous_default
        try:
            yield
        finally:
            google.auth.default = original


def _local_from_env(name: str) -> LocalFolderBucket:
    return LocalFolderBucket(path=_env(name, "PATH") or DEFAULT_LOCAL_BUCKET_PATH)


def _gcs_from_env(name: str) -> Block:
    from prefect_gcp.cloud_storage import GcsBucket
    from prefect_gcp.credentials import GcpCredentials

    bucket = _env(name, "BUCKET")
    if not bucket:
        raise ValueError(f"{env_prefix(name)}BUCKET is required for a GCS bucket")
    credentials = GcpCredentials(project=_env(name, "PROJECT"), service_account_file=_env(name, "SERVICE_ACCOUNT_FILE"))
    block: Block = GcsBucket(bucket=bucket, bucket_folder=_env(name, "FOLDER") or "", gcp_credentials=credentials)
    return block


def _s3_from_env(name: str) -> Block:
    from prefect_aws.client_parameters import AwsClientParameters
    from prefect_aws.credentials import AwsCredentials
    from prefect_aws.s3 import S3Bucket

    bucket = _env(name, "BUCKET")
    if not bucket:
        raise ValueError(f"{env_prefix(name)}BUCKET is required for an S3 bucket")
    # Keys may come from the standard AWS_* variables (boto3 reads them itself) or from ours.
    credentials = AwsCredentials(
        aws_access_key_id=_env(name, "ACCESS_KEY_ID"),
        aws_secret_access_key=SecretStr(secret) if (secret := _env(name, "SECRET_ACCESS_KEY")) else None,
        region_name=_env(name, "REGION"),
        aws_client_parameters=AwsClientParameters(endpoint_url=_env(name, "ENDPOINT_URL")),
    )
    return S3Bucket(bucket_name=bucket, bucket_folder=_env(name, "FOLDER") or "", credentials=credentials)


def bucket_block_type(kind: str) -> type[Block]:
    """The block class for a bucket kind (``local``, ``gcs``, ``s3``)."""
    if kind == "local":
        return LocalFolderBucket
    if kind == "gcs":
        from prefect_gcp.cloud_storage import GcsBucket

        gcs: type[Block] = GcsBucket
        return gcs
    if kind == "s3":
        from prefect_aws.s3 import S3Bucket

        return S3Bucket
    raise ValueError(f"bucket_kind must be 'local', 'gcs' or 's3', not {kind!r}")


def register_env_builders() -> None:
    """Add the bucket env builders to the shared resolver (idempotent)."""
    from prefect_aws.s3 import S3Bucket
    from prefect_gcp.cloud_storage import GcsBucket

    ENV_BUILDERS.setdefault(LocalFolderBucket, _local_from_env)
    ENV_BUILDERS.setdefault(GcsBucket, _gcs_from_env)
    ENV_BUILDERS.setdefault(S3Bucket, _s3_from_env)


def resolve_bucket(kind: str, name: str = DICOM_BUCKET_BLOCK) -> Block:
    """The bucket block ``name`` of ``kind``, via :func:`resolve_block` (emulator-safe for GCS)."""
    block_type = bucket_block_type(kind)
    with anonymous_adc_if_emulated():
        return resolve_block(name, block_type)


register_env_builders()
