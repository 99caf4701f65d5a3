"""The options of one ingest run, validated before any work: a bad value names its field.

Flow ``ingest_files`` builds :class:`IngestRunOptions` from its parameters (and :class:`IngestFanOut` from
its fan-out parameters) in one place; a fanned-out run gives the options whole to each
``ingest_files_prefix`` child. Block names have no default here: the blocks package owns them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator

from clinicflow.core.options import PartitionedFanOut, RunOptions
from clinicflow.core.sql import validate_table_name
from clinicflow.ingest.db import DEFAULT_SCHEMA
from clinicflow.ingest.pipeline import MIB, IngestSettings

Extractor = Literal["rules", "llm", "none"]
EXTRACTORS: tuple[Extractor, ...] = ("rules", "llm", "none")
# The schema of the ingestion tables: a plain name, as it is interpolated into SQL.
SchemaName = Annotated[str, AfterValidator(validate_table_name)]
_DB_HELP = "PostgresServer block of the ingestion database."
_SCHEMA_HELP = "Schema of the ingestion tables."


class IngestRunOptions(RunOptions):
    """What one ingest run (or each of its fan-out children) is given; defaults are the flow's."""

    options_name: ClassVar[str] = "ingest options"

    batch_size: int = Field(100, ge=1, description="Objects per batch (memory: batch_size × max_file_mb at most).")
    max_file_mb: float = Field(50, gt=0, description="Larger objects are dead-lettered (too-large), never read.")
    fail_percentage: float = Field(
        0, ge=0, le=100, description="Seeded fault injection for drills: % of items failed [DLQ]."
    )
    max_error_rate: float = Field(  # a fraction of the new items
        0.1,
        ge=0,
        le=1,
        description="Above this fraction of new items failing, the run ends Failed "
        "(exit 1); every readable document is staged regardless.",
    )
    extractor: Extractor = Field("rules", description="rules (offline) | llm (OpenAI-compatible block) | none")
    seed: int = Field(0, description="Seed of the fault injection.")
    database_block: str = Field(min_length=1, description=_DB_HELP)
    ingest_schema: SchemaName = Field(DEFAULT_SCHEMA, description=_SCHEMA_HELP)
    s3_block: str | None = Field(None, description="S3Bucket block for credentials/endpoint (else AWS_* vars).")
    llm_block: str | None = Field(None, description="OpenAICompatibleLLM block (default ingest-llm).")
    inline_binary_kb: float = Field(1024, ge=0, description="Binary documents up to this size are kept inline.")

    def settings(self, run_id: str) -> IngestSettings:
        """The library's settings of a run (or child run) recorded under ``run_id``."""
        return IngestSettings(
            run_id=run_id,
            schema=self.ingest_schema,
            max_file_bytes=int(self.max_file_mb * MIB),
            inline_binary_bytes=int(self.inline_binary_kb * 1024),
            fail_percentage=self.fail_percentage,
            seed=self.seed,
            max_error_rate=self.max_error_rate,
        )


class IngestFanOut(PartitionedFanOut):
    """``mode="fanout"``: about ``partitions`` prefix groups as child runs, ``fanout_width`` at a time."""

    options_name: ClassVar[str] = "ingest fan-out options"


class ReplayOptions(RunOptions):
    """What flow ``replay_dead_letters`` (``clinicflow dlq replay``) is given: which open letters, and how."""

    options_name: ClassVar[str] = "dead-letter replay options"

    ids: list[int] | None = Field(None, description="Letter ids (default: every open letter matching).")
    stage: str | None = Field(None, description="read | stage | extract | load")
    reason: str | None = Field(None, description="Reason code.")
    run_id: str | None = Field(None, description="Only letters of this run.")
    fail_percentage: float = Field(0, ge=0, le=100, description="Fault injection during the replay (drills).")
    seed: int = Field(0, description="Seed of the fault injection.")
    max_file_mb: float = Field(50, gt=0, description="Larger objects stay dead-lettered (too-large), never read.")
    extractor: Extractor | None = Field(None, description="rules | llm | none; default: each letter's own extractor.")
    database_block: str = Field(min_length=1, description=_DB_HELP)
    ingest_schema: SchemaName = Field(DEFAULT_SCHEMA, description=_SCHEMA_HELP)
    s3_block: str | None = Field(None, description="S3Bucket block for credentials/endpoint.")
    llm_block: str | None = Field(None, description="OpenAICompatibleLLM block.")

    def settings(self, run_id: str) -> IngestSettings:
        """The library's settings of the replay, recorded under ``run_id``."""
        return IngestSettings(
            run_id=run_id,
            schema=self.ingest_schema,
            max_file_bytes=int(self.max_file_mb * MIB),
            fail_percentage=self.fail_percentage,
            seed=self.seed,
        )


class ReextractOptions(RunOptions):
    """What flow ``reextract_documents`` (``clinicflow ingest reextract``) is given."""

    options_name: ClassVar[str] = "re-extraction options"

    extractor: Extractor = Field("rules", description="rules (offline) | llm (OpenAI-compatible block)")
    since: str | None = Field(None, description="Only documents staged at or after this ISO time/date.")
    uri_like: str | None = Field(None, description="Only documents whose uri matches this SQL LIKE pattern.")
    batch_size: int = Field(100, ge=1, description="Documents per batch.")
    database_block: str = Field(min_length=1, description=_DB_HELP)
    ingest_schema: SchemaName = Field(DEFAULT_SCHEMA, description=_SCHEMA_HELP)
    llm_block: str | None = Field(None, description="OpenAICompatibleLLM block (default ingest-llm).")

    @field_validator("extractor")
    @classmethod
    def _extracts(cls, value: Extractor) -> Extractor:
        if value == "none":
            raise ValueError("must be rules or llm (re-extraction needs an extractor)")
        return value

    @field_validator("since")
    @classmethod
    def _since_is_iso(cls, value: str | None) -> str | None:
        if value is not None:
            datetime.fromisoformat(value)  # a ValueError names the field
        return value

    def since_time(self) -> datetime | None:
        return datetime.fromisoformat(self.since) if self.since else None
