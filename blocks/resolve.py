"""The one block resolver.

``resolve_block(name, MySQLServer)`` loads the block saved under ``name``
from the Prefect API. With no Prefect API (the CronJob fallback, the local
demo) it builds the same block from environment variables instead
(``CLINICFLOW_<NAME>_HOST`` etc., documented in docs/deploy.md).

Which source is used: ``CLINICFLOW_CREDENTIALS=blocks|env`` if set, else
``blocks`` when ``PREFECT_API_URL`` is set and ``env`` when it is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect.blocks.core import Block

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.core import secret_env, settings
from clinicflow.core.errors import ClinicflowError

B = TypeVar("B", bound=Block)

# Well-known block names and the local defaults used in env mode.
SOURCE_BLOCK = "opendental-source"
REPLICATION_BLOCK = "opendental-replication"
ANALYTICS_BLOCK = "analytics-postgres"
DICOM_REPORTS_BLOCK = "dicom-reports-postgres"

ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    SOURCE_BLOCK: {"database": "opendental"},
    REPLICATION_BLOCK: {"database": "opendental_replication"},
    ANALYTICS_BLOCK: {"database": "analytics"},
    DICOM_REPORTS_BLOCK: {"database": "dicom_reports"},
}

# Builders for block types that are not ours (GcsBucket, S3Bucket, ...)
# register here: block type -> function(block_name) -> block.
ENV_BUILDERS: dict[type, Callable[[str], Block]] = {}


def env_prefix(name: str) -> str:
    """Prefix of the environment variables that stand in for block ``name``: ``CLINICFLOW_<NAME>_``."""
    return "CLINICFLOW_" + name.upper().replace("-", "_") + "_"


class BlockResolutionError(ClinicflowError):
    """A block could not be loaded or built. The message never holds secrets."""


def credentials_source() -> str:
    explicit = settings.credentials()
    if explicit is not None:
        return explicit
    from prefect.settings import PREFECT_API_URL

    return "blocks" if PREFECT_API_URL.value() else "env"


def resolve_block(name: str, block_type: type[B]) -> B:
    """Load block ``name`` of ``block_type`` from Prefect, or build it from the environment."""
    if credentials_source() == "blocks":
        try:
            block = block_type.load(name)
        except ValueError as exc:
            raise BlockResolutionError(
                f"block {name!r} of type {block_type.__name__} not found on the Prefect API "
                f"({type(exc).__name__}); create it with `clinicflow blocks setup`"
            ) from None
        if not isinstance(block, block_type):
            raise BlockResolutionError(f"block {name!r} is a {type(block).__name__}, expected {block_type.__name__}")
        return block
    return block_from_env(name, block_type)


def block_from_env(name: str, block_type: type[B]) -> B:
    """Build block ``name`` of ``block_type`` from ``CLINICFLOW_<NAME>_*`` environment variables.

    The env half of :func:`resolve_block`; also what ``clinicflow blocks setup
    --from-env`` saves as Prefect blocks, so both read the same variables.
    """
    builder = ENV_BUILDERS.get(block_type)
    try:
        if builder is not None:
            return builder(name)  # type: ignore[return-value]
        if issubclass(block_type, (MySQLServer, PostgresServer)):
            if name not in ENV_DEFAULTS and not secret_env.getenv(env_prefix(name) + "DATABASE"):
                # A mistyped or new name must not fall back to a local default database (and read or write it).
                raise BlockResolutionError(
                    f"block {name!r}: no such block in env mode: set {env_prefix(name)}DATABASE (and _HOST, _PORT, "
                    f"_USER, _PASSWORD), or use one of {', '.join(sorted(ENV_DEFAULTS))}; with PREFECT_API_URL set, "
                    "`clinicflow blocks setup` saves it (docs/deploy.md)"
                )
            return block_type.from_env(name, ENV_DEFAULTS.get(name))  # type: ignore[return-value]
    except (ValueError, TypeError) as exc:
        # pydantic messages name the field, never the secret's value for SecretStr.
        raise BlockResolutionError(f"block {name!r} from environment: {exc}") from None
    raise BlockResolutionError(f"no environment builder for block type {block_type.__name__} (block {name!r})")
