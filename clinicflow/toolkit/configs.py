"""Pydantic configs for every tool, as discriminated unions on ``kind``; ``build(ctx)`` makes the tool.

A pipeline module may pass a config object, a plain dict (validated here),
or a ready tool object. Database configs name a connection (a block name);
the run's ``ctx.connections`` resolves it, so this module never imports Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ImportString, SecretStr, TypeAdapter

from clinicflow.core import secret_env, settings
from clinicflow.core.retry import RetryPolicy
from clinicflow.toolkit.base import (
    DeadLetterSink,
    Extractor,
    JsonlDeadLetters,
    Loader,
    MemoryDeadLetters,
    RunContext,
    ToolkitError,
    Transformer,
)
from clinicflow.toolkit.clickhouse import ClickHouseConnection, ClickHouseExtractor, ClickHouseLoader
from clinicflow.toolkit.console import ConsoleLoader
from clinicflow.toolkit.files import FileExtractor, FileFormat, FileLoader, WritableFormat
from clinicflow.toolkit.http import (
    CursorPagination,
    HttpExtractor,
    LinkPagination,
    NoPagination,
    OffsetPagination,
    PagePagination,
)
from clinicflow.toolkit.sqldb import PostgresDeadLetters, PostgresLoader, SqlExtractor
from clinicflow.toolkit.templates import from_env_reference, resolved
from clinicflow.toolkit.transform import ColumnTransformer, LambdaTransformer, TypeConverter, TypeName

DEFAULT_CLICKHOUSE_DIR = "out/clickhouse"


def clickhouse_from_env() -> ClickHouseConnection:
    """``CLINICFLOW_CLICKHOUSE_URL`` / ``_DATABASE``, read at call time.

    Embedded chDB in ./out/clickhouse by default.
    """
    url = secret_env.getenv("CLINICFLOW_CLICKHOUSE_URL") or f"chdb://{Path(DEFAULT_CLICKHOUSE_DIR).resolve()}"
    return ClickHouseConnection(url=SecretStr(url), database=settings.clickhouse_database())


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def _connection(ctx: RunContext, dialect: str, name: str) -> Any:
    if ctx.connections is None:
        raise ToolkitError(f"no connection resolver in this run to find {dialect} connection {name!r}")
    return ctx.connections(dialect, name)


# --- extractors ---------------------------------------------------------------------------------


class HttpExtractorConfig(_Config):
    kind: Literal["http"] = "http"
    url: str = Field(description="The first page's URL.")
    method: Literal["GET", "POST"] = "GET"
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Request headers; `${NAME}` in a value (`Bearer ${API_TOKEN}`) is read from the environment.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Query parameters of every request.")
    timeout_seconds: float = Field(30.0, gt=0, description="Per request.")
    records_path: str = Field("", description="Dotted path to the records list in the JSON body; empty: the body.")
    empty_when_missing: bool = Field(
        False,
        description="A page whose body has nothing at records_path has no records (a FHIR search Bundle with no "
        "match has no `entry`); false: that is an error naming the body's keys.",
    )
    pagination: Annotated[
        PagePagination | OffsetPagination | CursorPagination | LinkPagination | NoPagination,
        Field(discriminator="style"),
    ] = NoPagination()
    max_retries: int = Field(
        3,
        ge=0,
        description="Retries of a transient failure (408/425/429/5xx, dropped connection), honouring Retry-After.",
    )
    backoff_seconds: float = Field(1.0, ge=0, description="First retry delay, doubled each retry.")
    rate_limit_per_second: float | None = Field(None, gt=0, description="Token-bucket rate; None: unlimited.")
    rate_limit_burst: float | None = Field(None, ge=1, description="Token-bucket capacity (default: the rate).")

    def build(self, ctx: RunContext) -> HttpExtractor:
        return HttpExtractor(
            self.url,
            method=self.method,
            headers={k: from_env_reference(v, f"header {k}") for k, v in self.headers.items()},
            params=self.params,
            timeout_seconds=self.timeout_seconds,
            records_path=self.records_path,
            empty_when_missing=self.empty_when_missing,
            pagination=self.pagination,
            retry=RetryPolicy(self.max_retries, self.backoff_seconds),
            rate_limit_per_second=self.rate_limit_per_second,
            rate_limit_burst=self.rate_limit_burst,
        )


class FileExtractorConfig(_Config):
    kind: Literal["file"] = "file"
    path: str = Field(description="A local file.")
    format: FileFormat | None = Field(
        None, description="None: told by the suffix (.csv, .jsonl, .parquet, then .gz/.bz2/.xz/.zst; .xlsx)."
    )
    encoding: str = "utf-8"
    batch_size: int = Field(10_000, gt=0, description="Rows per batch.")
    delimiter: str = Field(",", description="CSV only.")
    sheet: str | None = Field(
        None, description="xlsx only: the worksheet's name (default the first); its first non-empty row is the header."
    )

    def build(self, ctx: RunContext) -> FileExtractor:
        return FileExtractor(
            self.path,
            format=self.format,
            encoding=self.encoding,
            batch_size=self.batch_size,
            delimiter=self.delimiter,
            sheet=self.sheet,
        )


class SqlExtractorConfig(_Config):
    kind: Literal["sql"] = "sql"
    dialect: Literal["mysql", "postgres"]
    connection: str = Field(description="Block name of the database (e.g. analytics-postgres).")
    query: str = Field(
        description="SELECT; `%(start)s` / `%(end)s` are the time scope, `%(name)s` a parameter (bound by the driver)."
    )
    batch_size: int = Field(10_000, gt=0, description="Rows per batch (a server-side cursor).")

    def build(self, ctx: RunContext) -> SqlExtractor:
        return SqlExtractor(
            _connection(ctx, self.dialect, self.connection),
            self.query,
            dialect=self.dialect,
            batch_size=self.batch_size,
        )


class ClickHouseExtractorConfig(_Config):
    kind: Literal["clickhouse"] = "clickhouse"
    connection: ClickHouseConnection | None = Field(
        None, description="None: $CLINICFLOW_CLICKHOUSE_URL, else chDB in ./out/clickhouse."
    )
    query: str = Field(description="SELECT (ClickHouse's own `{name:Type}` parameters are not placeholders).")
    batch_size: int = Field(100_000, gt=0, description="Rows per batch.")

    def build(self, ctx: RunContext) -> ClickHouseExtractor:
        return ClickHouseExtractor(self.connection or clickhouse_from_env(), self.query, batch_size=self.batch_size)


ExtractorConfig = Annotated[
    HttpExtractorConfig | FileExtractorConfig | SqlExtractorConfig | ClickHouseExtractorConfig,
    Field(discriminator="kind"),
]

# --- transformers -------------------------------------------------------------------------------


class DeadLetterConfig(_Config):
    """Where rejected rows go: a JSON Lines file (``path``) or a PostgreSQL table (``connection``, ``table``)."""

    kind: Literal["jsonl", "postgres", "memory"] = "jsonl"
    path: str | None = Field(None, description="jsonl: a folder; each run writes `<run id>/<step>.jsonl` in it.")
    keep_runs: int = Field(30, ge=1, description="jsonl: run folders kept (the newest); older ones are deleted.")
    connection: str | None = Field(None, description="postgres: block name of the database.")
    schema_name: str = Field("public", alias="schema", description="postgres: schema of the table.")
    table: str = Field("toolkit_dead_letters", description="postgres: the table (created when missing).")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def build(self, ctx: RunContext) -> DeadLetterSink:
        if self.kind == "memory":
            return MemoryDeadLetters()
        if self.kind == "postgres":
            if not self.connection:
                raise ToolkitError("dead_letters: a postgres sink needs a connection (block name)")
            return PostgresDeadLetters(
                _connection(ctx, "postgres", self.connection),
                pipeline=ctx.pipeline,
                schema=self.schema_name,
                table=self.table,
            )
        if not self.path:
            raise ToolkitError("dead_letters: a jsonl sink needs a path (a folder)")
        return JsonlDeadLetters(self.path, run_id=ctx.run_id, step=ctx.step or "adhoc", keep_runs=self.keep_runs)


class LambdaConfig(_Config):
    kind: Literal["lambda"] = "lambda"
    function: ImportString[Callable[..., Any]] | Callable[..., Any] = Field(
        description="A function, or its import path `package.module:name`."
    )
    per: Literal["row", "batch"] = Field("row", description="Called with a row dict, or with a Batch.")

    def build(self, ctx: RunContext) -> LambdaTransformer:
        return LambdaTransformer(self.function, per=self.per)


class TypeConversionConfig(_Config):
    kind: Literal["types"] = "types"
    mapping: dict[str, TypeName] = Field(
        description="Column -> type: int, float, decimal, str, bool, date, datetime (ISO 8601), or date:FORMAT / "
        "datetime:FORMAT with a strptime format (`date:%d.%m.%Y`); None stays None."
    )
    strict: bool = Field(
        True,
        description="True: the first bad value fails the step (row index and column "
        "named). False: the row goes to dead letters and the stream goes on.",
    )
    dead_letters: DeadLetterConfig | None = Field(
        None, description="Lenient only: where rejected rows go (default: kept in memory, counted)."
    )
    max_rejected_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Lenient only: the step ends Failed when more than this fraction of its rows "
        "was rejected; at or below it, Completed with a warning. 0: any rejected row "
        "fails the step.",
    )

    def build(self, ctx: RunContext) -> TypeConverter:
        sink = self.dead_letters.build(ctx) if self.dead_letters else None
        return TypeConverter(
            self.mapping, strict=self.strict, dead_letters=sink, max_rejected_fraction=self.max_rejected_fraction
        )


class ColumnsConfig(_Config):
    kind: Literal["columns"] = "columns"
    rename: dict[str, str] = Field(default_factory=dict, description="Old name -> new name.")
    select: list[str] | None = Field(None, description="Columns kept, in this order (after rename and derive).")
    derive: dict[str, ImportString[Callable[..., Any]] | Callable[..., Any]] = Field(
        default_factory=dict, description="New column -> function of the row dict."
    )

    def build(self, ctx: RunContext) -> ColumnTransformer:
        return ColumnTransformer(rename=self.rename, select=self.select, derive=self.derive)


TransformerConfig = Annotated[LambdaConfig | TypeConversionConfig | ColumnsConfig, Field(discriminator="kind")]

# --- loaders ------------------------------------------------------------------------------------


class PostgresLoaderConfig(_Config):
    kind: Literal["postgres"] = "postgres"
    connection: str = Field(description="Block name of the PostgreSQL database.")
    table: str
    schema_name: str = Field("public", alias="schema")
    mode: Literal["insert", "upsert"] = Field("insert", description="insert: COPY; upsert: ON CONFLICT on key_columns.")
    key_columns: list[str] = Field(default_factory=list, description="upsert: the conflict key.")
    create_sql: str | None = Field(None, description="Run before the first batch (CREATE TABLE IF NOT EXISTS ...).")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def build(self, ctx: RunContext) -> PostgresLoader:
        return PostgresLoader(
            _connection(ctx, "postgres", self.connection),
            self.table,
            schema=self.schema_name,
            mode=self.mode,
            key_columns=self.key_columns,
            create_sql=self.create_sql,
        )


class ClickHouseLoaderConfig(_Config):
    kind: Literal["clickhouse"] = "clickhouse"
    connection: ClickHouseConnection | None = Field(
        None, description="None: $CLINICFLOW_CLICKHOUSE_URL, else chDB in ./out/clickhouse."
    )
    table: str
    mode: Literal["insert", "upsert"] = "insert"
    upsert_strategy: Literal["replacing", "delete_insert"] = Field(
        "replacing",
        description="replacing: a ReplacingMergeTree keeps the highest version_column; "
        "delete_insert: delete the batch's keys, then insert.",
    )
    key_columns: list[str] = Field(default_factory=list, description="upsert: the key.")
    version_column: str = Field("_version", description="replacing: filled by the loader.")
    batch_size: int = Field(100_000, gt=0, description="Rows per insert.")
    create_sql: str | None = Field(None, description="Run before the first batch.")

    def build(self, ctx: RunContext) -> ClickHouseLoader:
        return ClickHouseLoader(
            self.connection or clickhouse_from_env(),
            self.table,
            mode=self.mode,
            upsert_strategy=self.upsert_strategy,
            key_columns=self.key_columns,
            version_column=self.version_column,
            batch_size=self.batch_size,
            create_sql=self.create_sql,
        )


class BucketRef(_Config):
    """A bucket block by kind and name (``local``, ``gcs``, ``s3``), resolved by the run."""

    kind: Literal["local", "gcs", "s3"]
    block: str


class FileLoaderConfig(_Config):
    kind: Literal["file"] = "file"
    path: str = Field(description="A local path, or the object name when bucket is set.")
    format: WritableFormat | None = Field(None, description="None: told by the suffix.")
    encoding: str = "utf-8"
    bucket: BucketRef | None = Field(None, description="None: a local file.")

    def build(self, ctx: RunContext) -> FileLoader:
        bucket = _connection(ctx, f"bucket:{self.bucket.kind}", self.bucket.block) if self.bucket else None
        return FileLoader(self.path, format=self.format, encoding=self.encoding, bucket=bucket)


class ConsoleLoaderConfig(_Config):
    kind: Literal["console"] = "console"
    max_rows: int = Field(20, ge=0, description="Rows shown; every row is counted.")
    title: str | None = None
    format: Literal["table", "lines"] = "table"
    progress: bool = Field(True, description="A live row count on a terminal.")

    def build(self, ctx: RunContext) -> ConsoleLoader:
        return ConsoleLoader(max_rows=self.max_rows, title=self.title, format=self.format, progress=self.progress)


LoaderConfig = Annotated[
    PostgresLoaderConfig | ClickHouseLoaderConfig | FileLoaderConfig | ConsoleLoaderConfig, Field(discriminator="kind")
]

_EXTRACTOR = TypeAdapter(ExtractorConfig)
_TRANSFORMER = TypeAdapter(TransformerConfig)
_LOADER = TypeAdapter(LoaderConfig)


def _tool(value: Any, adapter: TypeAdapter[Any], protocol: type, role: str) -> Any:
    """A config (validated from a dict if needed) or a ready tool."""
    if isinstance(value, dict):
        return adapter.validate_python(value)
    if isinstance(value, BaseModel) and hasattr(value, "build"):
        return value
    if isinstance(value, protocol):
        return value
    raise ToolkitError(f"{role}: expected a config dict, a config or a tool, got {type(value).__name__}")


def extractor_of(value: Any) -> Any:
    return _tool(value, _EXTRACTOR, Extractor, "extract")


def transformer_of(value: Any) -> Any:
    return _tool(value, _TRANSFORMER, Transformer, "transform")


def loader_of(value: Any) -> Any:
    return _tool(value, _LOADER, Loader, "load")


def built(tool_or_config: Any, ctx: RunContext) -> Any:
    """The tool itself, or the tool a config builds for this run (tools hold per-run state: row counters)."""
    if not isinstance(tool_or_config, BaseModel):
        return tool_or_config
    config: Any = resolved(tool_or_config, ctx.parameters)  # every config model of this module has build()
    return config.build(ctx)
