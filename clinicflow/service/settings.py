"""Where the service and the ``process_data`` flow find things, read at call time.

- the analytics PostgreSQL block (``analytics-postgres``): tables ``processing.*``;
- the processing bucket block ``processing-files-bucket`` of kind
  ``CLINICFLOW_PROCESSING_BUCKET_KIND`` (local, gcs, s3; default local, folder
  ``CLINICFLOW_PROCESSING_FILES_BUCKET_PATH``);
- the custom scripts folder ``CLINICFLOW_PROCESSING_SCRIPTS_DIR``;
- the API token: ``CLINICFLOW_API_TOKEN``, else the Prefect Secret block
  ``clinicflow-api-token`` when a Prefect API is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocks.buckets import resolve_bucket
from blocks.databases import PostgresServer
from blocks.resolve import ANALYTICS_BLOCK, resolve_block
from clinicflow.core import secret_env, settings
from clinicflow.processing.custom import scripts_dir_from_env

PROCESSING_BUCKET_BLOCK = "processing-files-bucket"
TOKEN_SECRET_BLOCK = "clinicflow-api-token"
DEPLOYMENT = "process-data/process-data"


@dataclass(frozen=True)
class ServiceSettings:
    database: PostgresServer
    bucket: Any
    scripts_dir: Path
    token: str
    deployment: str = DEPLOYMENT


def bucket_kind() -> str:
    return settings.processing_bucket_kind()


def processing_bucket() -> Any:
    return resolve_bucket(bucket_kind(), PROCESSING_BUCKET_BLOCK)


def processing_database() -> PostgresServer:
    return resolve_block(ANALYTICS_BLOCK, PostgresServer)


def api_token() -> str:
    """The token every endpoint but /health requires; RuntimeError when none is configured."""
    token = (secret_env.getenv("CLINICFLOW_API_TOKEN") or "").strip()
    if token:
        return token
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        from prefect.blocks.system import Secret

        try:
            secret: Any = Secret.load(TOKEN_SECRET_BLOCK)  # sync call: a Secret, not a coroutine
            return str(secret.get()).strip()
        except ValueError:
            pass
    raise RuntimeError(f"no API token: set CLINICFLOW_API_TOKEN or save a Secret block {TOKEN_SECRET_BLOCK!r}")


def settings_from_env() -> ServiceSettings:
    return ServiceSettings(
        database=processing_database(),
        bucket=processing_bucket(),
        scripts_dir=scripts_dir_from_env(),
        token=api_token(),
    )
