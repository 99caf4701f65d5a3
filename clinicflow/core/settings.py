"""Every setting clinicflow reads from the environment: one typed function each, read when called.

A value that cannot be used raises :class:`SettingError` naming the variable. An unset or empty variable
means the default. Where the default is a constant of the layer that uses it (a path of the project, a
deployment name), the function returns None and the caller applies it. Credentials are not settings: they
are read through :mod:`clinicflow.core.secret_env` under each block's prefix. docs/deploy.md's settings table
is :func:`markdown_table` (a unit test keeps them equal).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from clinicflow.core.errors import ClinicflowError

VARIABLES: dict[str, str] = {}  # name -> what it sets and its default, in declaration order


class SettingError(ClinicflowError, ValueError):
    """An environment variable holds a value clinicflow cannot use; the message names the variable."""


def _declare(name: str, description: str) -> str:
    VARIABLES[name] = description
    return name


def _text(name: str) -> str | None:
    """The variable's value, stripped; None when unset or empty."""
    value = (os.environ.get(name) or "").strip()
    return value or None


def _positive_int(name: str, default: int) -> int:
    text = _text(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingError(f"{name} must be a whole number, got {text!r}") from None
    if value <= 0:
        raise SettingError(f"{name} must be greater than 0, got {text!r}")
    return value


def _positive_float(name: str, default: float) -> float:
    text = _text(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingError(f"{name} must be a number, got {text!r}") from None
    if value <= 0:
        raise SettingError(f"{name} must be greater than 0, got {text!r}")
    return value


def _choice(name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    text = _text(name)
    if text is None:
        return default
    value = text.lower()
    if value not in choices:
        raise SettingError(f"{name}={text!r}: one of {', '.join(choices)}")
    return value


# --- credentials, Prefect, logging ------------------------------------------------------------------
CREDENTIALS = _declare(
    "CLINICFLOW_CREDENTIALS",
    "`env` or `blocks`: where credentials come from (default: `blocks` when a Prefect API is configured, else `env`)",
)
LOG_LEVEL = _declare("CLINICFLOW_LOG_LEVEL", "log level of the processing task worker (default INFO)")
PREFECT_API = _declare("PREFECT_API_URL", "Prefect's API; unset: flows run on an embedded server")


def credentials() -> str | None:
    """``env`` or ``blocks``; None when unset (the caller decides from the Prefect API)."""
    return _choice(CREDENTIALS, ("blocks", "env"), None)


def log_level() -> str:
    level = _text(LOG_LEVEL) or "INFO"
    if not isinstance(logging.getLevelName(level.upper()), int):
        raise SettingError(f"{LOG_LEVEL}={level!r}: a logging level such as DEBUG, INFO, WARNING")
    return level.upper()


def prefect_api_url() -> str | None:
    return _text(PREFECT_API)


# --- tables, connectors, object storage -------------------------------------------------------------
TABLES_FILE = _declare("CLINICFLOW_TABLES_FILE", "the tables.yml to read (default: the project's tables.yml)")
MYSQL_EXPORT = _declare(
    "CLINICFLOW_MYSQL_EXPORT", "`client` (the mariadb C client when installed, default) or `pymysql` for exports"
)
STORAGE_EMULATOR = _declare("STORAGE_EMULATOR_HOST", "a GCS emulator's address (tests, local runs)")
GOOGLE_PROJECT = _declare("GOOGLE_CLOUD_PROJECT", "the project anonymous GCS emulator clients report")


IMAGE = _declare("CLINICFLOW_IMAGE", "the image flow runs use: `prefect deploy` and `clinicflow pipelines sync`")


def image() -> str | None:
    return _text(IMAGE)


def tables_yml_file() -> Path | None:
    text = _text(TABLES_FILE)
    return Path(text) if text else None


def mysql_export() -> str:
    return _choice(MYSQL_EXPORT, ("client", "pymysql"), "client") or "client"


def storage_emulator() -> str | None:
    return _text(STORAGE_EMULATOR)


def google_cloud_project(default: str) -> str:
    return _text(GOOGLE_PROJECT) or default


# --- nightly, fan-out, partitioned flows ------------------------------------------------------------
NIGHTLY_WORKERS = _declare("CLINICFLOW_NIGHTLY_WORKERS", "task-runner threads of the nightly flows (default 4)")
REPLICATION_WORKERS = _declare("CLINICFLOW_REPLICATION_WORKERS", "concurrent copies of `replicate` (default 4)")
SMALL_TABLE_ROWS = _declare(
    "CLINICFLOW_SMALL_TABLE_ROWS", "tables estimated at or below this many rows go in groups (default 1000)"
)
SMALL_GROUP_SIZE = _declare("CLINICFLOW_SMALL_GROUP_SIZE", "tables per small-table group (default 25)")
FANOUT_DEPLOYMENT = _declare(
    "CLINICFLOW_FANOUT_DEPLOYMENT",
    "the child deployment of a fanned-out night (default `nightly-tables/nightly-tables`)",
)
FANOUT_LIMIT = _declare(
    "CLINICFLOW_FANOUT_LIMIT", "the global concurrency limit of fan-out children (default `clinicflow-fanout`)"
)
FANOUT_POLL_CAP = _declare(
    "CLINICFLOW_FANOUT_POLL_CAP_SECONDS", "longest wait between two polls of fan-out children (default 10)"
)
DICOM_RANGE_DEPLOYMENT = _declare(
    "CLINICFLOW_DICOM_RANGE_DEPLOYMENT",
    "the child deployment of a partitioned DICOM run (default `dicom-reports-range/dicom-reports-range`)",
)
INGEST_PREFIX_DEPLOYMENT = _declare(
    "CLINICFLOW_INGEST_PREFIX_DEPLOYMENT",
    "the child deployment of a partitioned ingest (default `ingest-files-prefix/ingest-files-prefix`)",
)
WORK_POOL = _declare("CLINICFLOW_WORK_POOL", "the work pool pipeline deployments go to (default `clinicflow-k8s`)")


def nightly_workers() -> int:
    return _positive_int(NIGHTLY_WORKERS, 4)


def replication_workers() -> int:
    return _positive_int(REPLICATION_WORKERS, 4)


def small_table_rows() -> int:
    return _positive_int(SMALL_TABLE_ROWS, 1000)


def small_group_size() -> int:
    return _positive_int(SMALL_GROUP_SIZE, 25)


def fanout_deployment() -> str | None:
    return _text(FANOUT_DEPLOYMENT)


def fanout_limit() -> str | None:
    return _text(FANOUT_LIMIT)


def fanout_poll_cap_seconds() -> float:
    return _positive_float(FANOUT_POLL_CAP, 10.0)


def dicom_range_deployment() -> str:
    return _text(DICOM_RANGE_DEPLOYMENT) or "dicom-reports-range/dicom-reports-range"


def ingest_prefix_deployment() -> str:
    return _text(INGEST_PREFIX_DEPLOYMENT) or "ingest-files-prefix/ingest-files-prefix"


def work_pool() -> str | None:
    return _text(WORK_POOL)


# --- pipelines toolkit --------------------------------------------------------------------------------
PIPELINES_DIR = _declare("CLINICFLOW_PIPELINES_DIR", "the folder of pipeline definitions (default `pipelines`)")
CLICKHOUSE_DATABASE = _declare(
    "CLINICFLOW_CLICKHOUSE_DATABASE", "the ClickHouse database of pipelines (default `default`)"
)


def pipelines_dir() -> Path | None:
    text = _text(PIPELINES_DIR)
    return Path(text) if text else None


def clickhouse_database() -> str:
    return _text(CLICKHOUSE_DATABASE) or "default"


# --- processing service -------------------------------------------------------------------------------
PROCESSING_BUCKET_KIND = _declare(
    "CLINICFLOW_PROCESSING_BUCKET_KIND", "`local`, `gcs` or `s3`: the processing bucket (default `local`)"
)
PROCESSING_SCRIPTS_DIR = _declare(
    "CLINICFLOW_PROCESSING_SCRIPTS_DIR", "the custom scripts folder (default `processing_scripts`)"
)
PROCESSING_SCRIPT_RUNNER_URL = _declare(
    "CLINICFLOW_PROCESSING_SCRIPT_RUNNER_URL", "the script runner service; unset: scripts run in this process's sandbox"
)
PROCESSING_SANDBOX = _declare(
    "CLINICFLOW_PROCESSING_SANDBOX", "`auto`, `bwrap`, `uid` or `process`: how scripts are isolated (default `auto`)"
)
PROCESSING_LEASE_SECONDS = _declare(
    "CLINICFLOW_PROCESSING_LEASE_SECONDS", "how long a row's lease lasts without a heartbeat (default 30)"
)
PROCESSING_DEPLOYMENT_MIN_ROWS = _declare(
    "CLINICFLOW_PROCESSING_DEPLOYMENT_MIN_ROWS", "rows from which a request runs as a deployment (default 20000000)"
)
PROCESSING_MAX_UPLOAD_MB = _declare(
    "CLINICFLOW_PROCESSING_MAX_UPLOAD_MB", "largest data file accepted, MiB (default 512)"
)
PROCESSING_SERIES_CACHE_MB = _declare(
    "CLINICFLOW_PROCESSING_SERIES_CACHE_MB", "the series cache's bound, MiB (default 4096)"
)
PROCESSING_MAX_RESULT_MB = _declare("CLINICFLOW_PROCESSING_MAX_RESULT_MB", "largest script result, MiB (default 16)")
SCRIPT_MEMORY_MB = _declare("CLINICFLOW_PROCESSING_SCRIPT_MEMORY_MB", "a script's memory, MiB (default 2048)")
SCRIPT_PROCESSES = _declare("CLINICFLOW_PROCESSING_SCRIPT_PROCESSES", "a script's processes (default 16)")
SCRIPT_FILE_MB = _declare("CLINICFLOW_PROCESSING_SCRIPT_FILE_MB", "largest file a script writes, MiB (default 64)")
SCRIPT_OPEN_FILES = _declare("CLINICFLOW_PROCESSING_SCRIPT_OPEN_FILES", "a script's open files (default 256)")
SANDBOX_MODES = ("auto", "bwrap", "uid", "process")


def processing_bucket_kind() -> str:
    return _choice(PROCESSING_BUCKET_KIND, ("local", "gcs", "s3"), "local") or "local"


def processing_scripts_dir() -> Path | None:
    text = _text(PROCESSING_SCRIPTS_DIR)
    return Path(text) if text else None


def processing_script_runner_url() -> str | None:
    return _text(PROCESSING_SCRIPT_RUNNER_URL)


def processing_sandbox() -> str:
    return _choice(PROCESSING_SANDBOX, SANDBOX_MODES, "auto") or "auto"


def processing_lease_seconds(default: float) -> float:
    return _positive_float(PROCESSING_LEASE_SECONDS, default)


def processing_deployment_min_rows(default: int) -> int:
    return _positive_int(PROCESSING_DEPLOYMENT_MIN_ROWS, default)


def processing_max_upload_mb(default: int) -> int:
    return _positive_int(PROCESSING_MAX_UPLOAD_MB, default)


def processing_series_cache_mb(default: int) -> int:
    return _positive_int(PROCESSING_SERIES_CACHE_MB, default)


def processing_max_result_mb() -> int:
    return _positive_int(PROCESSING_MAX_RESULT_MB, 16)


def script_memory_mb() -> int:
    return _positive_int(SCRIPT_MEMORY_MB, 2048)


def script_processes() -> int:
    return _positive_int(SCRIPT_PROCESSES, 16)


def script_file_mb() -> int:
    return _positive_int(SCRIPT_FILE_MB, 64)


def script_open_files() -> int:
    return _positive_int(SCRIPT_OPEN_FILES, 256)


def markdown_table() -> str:
    """docs/deploy.md's settings table."""
    rows = [f"| `{name}` | {description} |" for name, description in VARIABLES.items()]
    return "\n".join(["| Variable | What it sets |", "|---|---|", *rows])
