"""Block set-up behind ``clinicflow blocks setup [--from-env | --file F]`` and ``clinicflow blocks register``.

``setup`` creates or updates, idempotently, every block the deployments'
flows resolve (``DEPLOYMENT_BLOCKS``) on the Prefect API named by
``PREFECT_API_URL``:

- ``--from-env`` builds each block from the same ``CLINICFLOW_<NAME>_*``
  variables the resolver reads in env mode (``blocks.resolve.block_from_env``),
  so the Kubernetes Secrets that feed the CronJob fallback can feed the blocks
  too. A block none of whose variables is set is skipped and listed as such.
- ``--file F`` reads a YAML file ``{blocks: {<name>: {type: <slug>, <field>: <value>, ...}}}``;
  ``type`` may be left out for the well-known names.

A block whose saved fields already equal the new ones is left untouched
("unchanged"); otherwise it is saved with ``overwrite=True``. Errors name the
block and the field, never a value (passwords are ``SecretStr``). Exit code 0
when every requested block was set up, 1 otherwise.

``register`` registers clinicflow's block types with the API (the same as
``prefect block register -m blocks.databases``); ``setup`` registers the types
it saves as a side effect.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from prefect_gcp.cloud_storage import GcsBucket
from pydantic import ValidationError

from blocks.buckets import DICOM_BUCKET_BLOCK, LocalFolderBucket, anonymous_adc_if_emulated
from blocks.databases import MySQLServer, PostgresServer
from blocks.llm import OpenAICompatibleLLM
from blocks.resolve import (
    ANALYTICS_BLOCK,
    DICOM_REPORTS_BLOCK,
    REPLICATION_BLOCK,
    SOURCE_BLOCK,
    BlockResolutionError,
    block_from_env,
    env_prefix,
)
from clinicflow.core import secret_env
from clinicflow.core.errors import ClinicflowError

# Every block a deployment in prefect.yaml resolves, by name, with its type
# (the dicom-reports deployment runs with bucket_kind=gcs).
DEPLOYMENT_BLOCKS: dict[str, type[Block]] = {
    SOURCE_BLOCK: MySQLServer,
    REPLICATION_BLOCK: MySQLServer,
    ANALYTICS_BLOCK: PostgresServer,
    DICOM_REPORTS_BLOCK: PostgresServer,
    DICOM_BUCKET_BLOCK: GcsBucket,
}

# Block types clinicflow defines (registered by `clinicflow blocks register`).
CLINICFLOW_BLOCK_TYPES: tuple[type[Block], ...] = (MySQLServer, PostgresServer, LocalFolderBucket, OpenAICompatibleLLM)


def _auth_context(block_type: type[Block]) -> contextlib.AbstractContextManager[None]:
    # GcpCredentials asks google.auth for default credentials when built or
    # loaded; against the GCS emulator that must be anonymous (blocks.buckets).
    return anonymous_adc_if_emulated() if issubclass(block_type, GcsBucket) else contextlib.nullcontext()


class BlockSetupError(ClinicflowError, ValueError):
    """A block definition is unusable. The message names block and field, never a value."""


@dataclass(frozen=True)
class SetupOutcome:
    name: str
    block_type: str
    action: str  # created | updated | unchanged | skipped | failed
    detail: str = ""


def _validation_message(block_name: str, exc: ValidationError) -> str:
    # Field locations and messages only: pydantic's default text quotes the input value.
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(block)'}: {err['msg']}" for err in exc.errors())
    return f"block {block_name!r}: {problems}"


def blocks_from_env(names: list[str] | None = None) -> list[tuple[str, Block | None, str]]:
    """``(name, block or None, reason)`` for each deployment block, built from the environment.

    A block is built only when at least one ``CLINICFLOW_<NAME>_*`` variable is
    set, so local defaults never end up saved as production credentials.
    """
    chosen = _chosen(names)
    found: list[tuple[str, Block | None, str]] = []
    for name in chosen:
        prefix = env_prefix(name)
        if not any(key.startswith(prefix) for key in secret_env.names()):
            found.append((name, None, f"no {prefix}* variables set"))
            continue
        try:
            with _auth_context(DEPLOYMENT_BLOCKS[name]):
                found.append((name, block_from_env(name, DEPLOYMENT_BLOCKS[name]), ""))
        except BlockResolutionError as exc:
            raise BlockSetupError(str(exc)) from None
        except ValidationError as exc:
            raise BlockSetupError(_validation_message(name, exc)) from None
    return found


def _chosen(names: list[str] | None) -> list[str]:
    if not names:
        return list(DEPLOYMENT_BLOCKS)
    unknown = [n for n in names if n not in DEPLOYMENT_BLOCKS]
    if unknown:
        raise BlockSetupError(
            f"unknown block name(s) {', '.join(map(repr, unknown))}; the deployments use {', '.join(DEPLOYMENT_BLOCKS)}"
        )
    return list(names)


def _types_by_slug() -> dict[str, type[Block]]:
    types = {t.get_block_type_slug(): t for t in CLINICFLOW_BLOCK_TYPES}
    types.update({t.get_block_type_slug(): t for t in DEPLOYMENT_BLOCKS.values()})
    return types


def blocks_from_mapping(data: Any, source: str, names: list[str] | None = None) -> list[tuple[str, Block]]:
    """Blocks from ``{blocks: {name: {type: slug, field: value}}}`` (a parsed YAML/JSON file)."""
    if not isinstance(data, dict) or not isinstance(data.get("blocks"), dict):
        raise BlockSetupError(f"{source}: expected a mapping with a 'blocks' mapping of block name -> fields")
    unexpected = sorted(set(data) - {"blocks"})
    if unexpected:
        raise BlockSetupError(f"{source}: unexpected top-level key(s) {', '.join(unexpected)}")
    wanted = set(_chosen(names)) if names else None
    types = _types_by_slug()
    built: list[tuple[str, Block]] = []
    for name, fields in data["blocks"].items():
        if wanted is not None and name not in wanted:
            continue
        if not isinstance(fields, dict):
            raise BlockSetupError(f"{source}: block {name!r} must be a mapping of field -> value")
        fields = dict(fields)
        slug = fields.pop("type", None)
        if slug is None:
            if name not in DEPLOYMENT_BLOCKS:
                raise BlockSetupError(f"{source}: block {name!r} needs a 'type' ({', '.join(sorted(types))})")
            block_type = DEPLOYMENT_BLOCKS[name]
        else:
            if slug not in types:
                raise BlockSetupError(
                    f"{source}: block {name!r} has unknown type {slug!r} ({', '.join(sorted(types))})"
                )
            block_type = types[slug]
            expected = DEPLOYMENT_BLOCKS.get(name)
            if expected is not None and block_type is not expected:
                raise BlockSetupError(
                    f"{source}: block {name!r} must be of type {expected.get_block_type_slug()!r}, "
                    f"the flows load it as such"
                )
        unknown = sorted(set(fields) - set(block_type.model_fields))
        if unknown:
            # A mistyped key ("databse") would leave the field at its default: a local database, not the one meant.
            raise BlockSetupError(
                f"{source}: block {name!r} ({block_type.get_block_type_slug()}) has no field(s) "
                f"{', '.join(map(repr, unknown))}; its fields: {', '.join(block_type.model_fields)} (flat under the "
                "block's name, beside 'type')"
            )
        try:
            with _auth_context(block_type):
                built.append((name, block_type.model_validate(fields)))
        except ValidationError as exc:
            raise BlockSetupError(f"{source}: " + _validation_message(name, exc)) from None
    if wanted is not None:
        missing = sorted(wanted - {name for name, _ in built})
        if missing:
            raise BlockSetupError(f"{source}: no definition for block(s) {', '.join(missing)}")
    return built


def blocks_from_file(path: Path, names: list[str] | None = None) -> list[tuple[str, Block]]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BlockSetupError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise BlockSetupError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    return blocks_from_mapping(data, str(path), names)


def _fields(value: Any) -> Any:
    # Declared fields only, nested blocks too (a loaded block also carries its
    # document id and name). SecretStr compares by its secret value, so a
    # changed password counts as a change.
    if isinstance(value, Block):
        return {name: _fields(getattr(value, name)) for name in type(value).model_fields}
    return value


def save_block(name: str, block: Block) -> str:
    """Create or update block ``name`` on the Prefect API; ``created``, ``updated`` or ``unchanged``."""
    block_type = type(block)
    with _auth_context(block_type):
        try:
            existing = block_type.load(name)
        except ValueError:  # Prefect raises ValueError for a missing block document
            existing = None
        if existing is not None and type(existing) is block_type and _fields(existing) == _fields(block):
            return "unchanged"
        block.save(name, overwrite=True)
    return "created" if existing is None else "updated"


def describe_block(block: Block) -> str:
    """A printable address without secrets."""
    describe = getattr(block, "describe", None)
    if callable(describe):
        return str(describe())
    if isinstance(block, GcsBucket):
        return f"gs://{block.bucket}/{block.bucket_folder}".rstrip("/")
    return block.get_block_type_slug()


def require_api() -> str:
    """The Prefect API URL blocks are saved to; an error without one."""
    from prefect.settings import PREFECT_API_URL

    url: str | None = PREFECT_API_URL.value()
    if not url:
        raise BlockSetupError(
            "PREFECT_API_URL is not set: blocks are saved on a Prefect server "
            "(without one, flows read CLINICFLOW_* variables directly and need no blocks)"
        )
    return url


def setup_blocks(*, from_env: bool, file: Path | None, names: list[str] | None = None) -> list[SetupOutcome]:
    """Create or update the deployment blocks; one outcome per block."""
    if from_env == (file is not None):
        raise BlockSetupError("give exactly one of --from-env or --file F")
    require_api()
    if from_env:
        candidates: list[tuple[str, Block | None, str]] = blocks_from_env(names)
    else:
        candidates = [(name, block, "") for name, block in blocks_from_file(file, names)]  # type: ignore[arg-type]
    outcomes: list[SetupOutcome] = []
    for name, block, reason in candidates:
        slug = DEPLOYMENT_BLOCKS[name].get_block_type_slug() if block is None else block.get_block_type_slug()
        if block is None:
            outcomes.append(SetupOutcome(name, slug, "skipped", reason))
            continue
        try:
            action = save_block(name, block)
        except Exception as exc:  # noqa: BLE001 - one block's failure must not hide the others
            outcomes.append(SetupOutcome(name, slug, "failed", f"{type(exc).__name__}: {exc}"))
            continue
        outcomes.append(SetupOutcome(name, slug, action, describe_block(block)))
    return outcomes


def register_block_types() -> list[str]:
    """Register clinicflow's block types and schemas with the Prefect API; their slugs."""
    require_api()
    slugs = []
    for block_type in dict.fromkeys((*CLINICFLOW_BLOCK_TYPES, *DEPLOYMENT_BLOCKS.values())):
        block_type.register_type_and_schema()
        slugs.append(block_type.get_block_type_slug())
    return slugs
