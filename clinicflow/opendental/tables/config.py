"""tables.yml: the per-table copy contract, validated by pydantic at load.

Every error names the table and the field, so an operator can fix the file
without reading a traceback. Validation of the file itself is all-or-nothing
(a broken contract must not half-run); a table that is valid here but
missing from the live source fails only that table, at run time.
"""

from __future__ import annotations

import pickle
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from clinicflow.core import settings
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.sql import IdentifierError, validate_table_name

DEFAULT_TABLES_FILE = Path(__file__).resolve().parents[3] / "tables.yml"
SUPPORTED_VERSIONS = (1,)
# MySQL/MariaDB identifiers hold at most 64 characters.
MYSQL_IDENT_MAX = 64
# Names the project makes for itself next to the clinic's tables (replication.py, pgload.py, metrics.py):
# a table of tables.yml with such a name would be dropped, renamed or overwritten by the project.
RESERVED_PREFIXES = ("_clinicflow", "clinicflow_stage")
RESERVED_SUFFIXES = ("__cf_shadow", "__cf_old", "__cf_stage")
# The longest suffix the project appends to a table name (replication's shadow/old/stage tables).
LONGEST_SUFFIX = max(len(s) for s in RESERVED_SUFFIXES)
MAX_TABLE_NAME = MYSQL_IDENT_MAX - LONGEST_SUFFIX


class ExtractionStrategy(str, Enum):  # noqa: UP042 - f-strings print "Cls.member"; StrEnum would change messages
    full_table = "full_table"
    incremental = "incremental"
    incremental_chunked = "incremental_chunked"


class ConfigError(ClinicflowError, ValueError):
    """tables.yml is malformed. The message names the table and the field."""


def reserved_name_error(name: str) -> str | None:
    """Why ``name`` cannot be a table of tables.yml (a name the project uses itself, or too long), or None."""
    lowered = name.lower()
    for prefix in RESERVED_PREFIXES:
        if lowered.startswith(prefix):
            return f"names starting with {prefix!r} are reserved for clinicflow's own tables"
    for suffix in RESERVED_SUFFIXES:
        if lowered.endswith(suffix):
            return f"names ending in {suffix!r} are reserved for clinicflow's own tables"
    if len(name) > MAX_TABLE_NAME:
        return (
            f"{len(name)} characters is too long: clinicflow appends up to {LONGEST_SUFFIX} characters "
            f"({', '.join(RESERVED_SUFFIXES)}) and MySQL names hold {MYSQL_IDENT_MAX}, so at most "
            f"{MAX_TABLE_NAME}"
        )
    return None


class _UniqueKeys:
    """A key repeated in one mapping is an error (not last-one-wins)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader reports it itself
                if first is not None:  # the values are marks, never None
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first.line + 1})", key_node.start_mark
                    )
                seen[key] = key_node.start_mark
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)  # type: ignore[misc]
        return mapping


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a key repeated in one mapping is an error."""


# libyaml's parser when PyYAML was built with it: a 450-table tables.yml parses ~10x faster.
_FastUniqueKeyLoader = type("_FastUniqueKeyLoader", (_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)), {})


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: where and what, never the file's text (PyYAML quotes a snippet of it)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{context}, {problem}" if context and not str(problem).startswith("duplicate key") else str(problem)
    return where + " ".join(text.split())


def yaml_load(text: str) -> Any:
    """Parse YAML text the way tables.yml is parsed (safe, duplicate keys rejected)."""
    try:
        return yaml.load(text, Loader=_FastUniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError:
        pass  # parsed again for the pure-Python parser's error message (the documented one)
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass


class TableConfig(BaseModel):
    """How one table is copied. Field names are the tables.yml keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    primary_key: list[str] = Field(
        default_factory=list, description="Single, composite, or empty (no key: copied fully)."
    )
    extraction_strategy: ExtractionStrategy = ExtractionStrategy.full_table
    incremental_columns: list[str] = Field(
        default_factory=list, validate_default=True, description="Watermark columns, in keyset order."
    )
    # strict: YAML's `true` is not the integer 1 (nor "5" the integer 5).
    batch_size: int = Field(default=50_000, gt=0, le=5_000_000, strict=True, description="Rows per chunk.")
    tier: int = Field(
        default=3, ge=0, le=9, strict=True, description="Processing tier; lower tiers run first (critical tables in 1)."
    )
    estimated_rows: int = Field(default=0, ge=0, strict=True)
    estimated_size_mb: float = Field(default=0.0, ge=0, strict=True)
    columns: list[str] | None = Field(default=None, description="Column list as last analysed; informational.")
    column_types: dict[str, str] | None = Field(
        default=None,
        description="Column definitions as last analysed (type, not null, auto_increment, on update); "
        "the drift check reports retyped columns against them.",
    )
    observed_watermark: str | None = Field(
        default=None,
        description="Highest value of the first incremental column seen by the schema analysis; "
        "the drift check reports a watermark that stopped moving while rows were added.",
    )
    boolean_columns: list[str] = Field(
        default_factory=list, description="tinyint(1) columns loaded into PostgreSQL as boolean."
    )
    reconcile_keys: bool = Field(
        default=True,
        strict=True,
        description="Compare primary keys with the source every night: deleted rows removed, rows "
        "missing from the target (backdated inserts) copied. Keyed tables only.",
    )
    reconcile_checksums: bool = Field(
        default=True,
        strict=True,
        description="Compare row checksums per key range every night: ranges whose rows differ "
        "(updates that did not move the watermark) are copied again.",
    )
    reconcile_slices: int = Field(
        default=0,
        ge=0,
        le=366,
        strict=True,
        description="Checksum one of this many slices of the key ranges each night "
        "(7: a full sweep a week, for tables too large to checksum nightly); keys are compared in full. "
        "0 (default): sized by the table at run time (every range up to ~100,000 rows, see docs/loading.md).",
    )

    @model_validator(mode="before")
    @classmethod
    def _reconcile_deletes_alias(cls, data: Any) -> Any:
        # tables.yml files from before reconciliation was on by default say reconcile_deletes.
        if isinstance(data, dict) and "reconcile_deletes" in data:
            data = dict(data)
            value = data.pop("reconcile_deletes")
            data.setdefault("reconcile_keys", value)
        return data

    @field_validator("primary_key", "incremental_columns", "boolean_columns")
    @classmethod
    def _no_blank_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or not name.strip():
                raise ValueError("column names must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate column names in {value}")
        return value

    @field_validator("column_types")
    @classmethod
    def _no_blank_types(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, definition in (value or {}).items():
            if not name or not name.strip() or not definition or not definition.strip():
                raise ValueError("column names and definitions must not be empty")
        return value

    @field_validator("incremental_columns")
    @classmethod
    def _strategy_needs_columns(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # Fields validate in declaration order, so the strategy is known here.
        strategy = info.data.get("extraction_strategy")
        if strategy is not None and strategy is not ExtractionStrategy.full_table and not value:
            raise ValueError(
                f"extraction_strategy {strategy.value!r} needs incremental_columns "
                "(a watermark column, or the primary key for append-only tables)"
            )
        return value

    @property
    def is_incremental(self) -> bool:
        return self.extraction_strategy is not ExtractionStrategy.full_table


class TablesConfig(BaseModel):
    """The whole tables.yml: ``tables`` plus optional hand-kept ``overrides``."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(default=1, description="tables.yml format version (only 1 exists).")
    tables: dict[str, TableConfig]
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def effective(self, table: str) -> TableConfig:
        """The settings of one table with its overrides applied."""
        base = self.tables[table]
        override = self.overrides.get(table)
        if not override:
            return base
        return TableConfig.model_validate({**base.model_dump(exclude_unset=False), **override})

    def effective_tables(self) -> dict[str, TableConfig]:
        return {name: self.effective(name) for name in self.tables}

    def by_tier(self, names: list[str] | None = None) -> list[tuple[int, list[str]]]:
        """Table names grouped by tier, lowest tier first, names sorted within a tier."""
        chosen = names if names is not None else list(self.tables)
        tiers: dict[int, list[str]] = {}
        for name in chosen:
            tiers.setdefault(self.effective(name).tier, []).append(name)
        return [(tier, sorted(tiers[tier])) for tier in sorted(tiers)]


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if len(loc) >= 2 and loc[0] in ("tables", "overrides"):
            table = loc[1]
            field = ".".join(loc[2:]) or "(table entry)"
            lines.append(f"{source}: table {table!r}, field {field!r}: {err['msg']}")
        else:
            lines.append(f"{source}: field {'.'.join(loc) or '(top level)'!r}: {err['msg']}")
    return "\n".join(lines)


def parse_tables_config(data: Any, source: str = "tables.yml") -> TablesConfig:
    """Validate already-parsed YAML data."""
    if not isinstance(data, dict) or "tables" not in data:
        raise ConfigError(f"{source}: field 'tables': the file must hold a mapping with a 'tables' key")
    tables = data.get("tables") or {}
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: field 'tables': must be a mapping of table name to settings")
    if "version" in data and not (type(data["version"]) is int and data["version"] in SUPPORTED_VERSIONS):
        raise ConfigError(
            f"{source}: field 'version': unsupported version {data['version']!r} "
            f"(this clinicflow reads version {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{source}: field 'overrides': must be a mapping of table name to settings")
    for name in list(tables) + list(overrides):
        if not isinstance(name, str):
            raise ConfigError(f"{source}: table {name!r}: table names must be text")
        try:
            validate_table_name(name)
        except IdentifierError as exc:
            raise ConfigError(f"{source}: table {name!r}: {exc}") from None
        reason = reserved_name_error(name)
        if reason:
            raise ConfigError(f"{source}: table {name!r}: {reason}")
    try:
        config = TablesConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
    for name in config.overrides:
        if name not in config.tables:
            raise ConfigError(f"{source}: table {name!r}, field 'overrides': no such table in 'tables'")
        try:
            config.effective(name)
        except ValidationError as exc:
            msgs = "; ".join(f"field {'.'.join(map(str, e['loc']))!r}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{source}: table {name!r}, overrides: {msgs}") from None
    return config


def load_tables_config(path: str | Path | None = None) -> TablesConfig:
    """Read and validate tables.yml (default: the project's, or $CLINICFLOW_TABLES_FILE)."""

    file = Path(path) if path else settings.tables_yml_file() or DEFAULT_TABLES_FILE
    # Each failure is one line naming the file; never the file's bytes (they may be anything).
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory, not a tables.yml file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{file}: not UTF-8 text (invalid byte at line {line}, offset {exc.start})") from None
    try:
        data = _parsed_once(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {yaml_error_line(exc)}") from None
    return parse_tables_config(data, source=str(file.name))


# The last tables.yml text parsed in this process and its data: the CLI's check before the flow starts
# and the flow read the same file (450 tables: 0.1 s of CPU a parse).
_last_parsed: tuple[str, bytes] | None = None


def _parsed_once(text: str) -> Any:
    """:func:`yaml_load` of ``text``, parsed once per process for the same text (each caller gets its own copy)."""
    global _last_parsed
    if _last_parsed is None or _last_parsed[0] != text:
        # Kept pickled: a copy from the pickle costs a few ms, where copy.deepcopy cost as much as the parse.
        _last_parsed = (text, pickle.dumps(yaml_load(text)))
    return pickle.loads(_last_parsed[1])
