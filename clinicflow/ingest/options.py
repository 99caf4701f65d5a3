"""The options of one ingest run, validated before any work: a bad value names its field.

Flow ``ingest_files`` builds :class:`IngestRunOptions` from its parameters (and :class:`IngestFanOut` from
its fan-out parameters) in one place; a fanned-out run gives the options whole to each
``ingest_files_prefix`` child. Block names have no default here: the blocks package owns them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from clinicflow.core.options import PartitionedFanOut, RunOptions
from clinicflow.core.sql import validate_table_name
from clinicflow.ingest.db import DEFAULT_SCHEMA
from clinicflow.ingest.pipeline import MIB, IngestSettings

Extractor = Literal["rules", "llm", "none"]
EXTRACTORS: tuple[Extractor, ...] = ("rules", "llm", "none")


class IngestRunOptions(RunOptions):
    """What one ingest run (or each of its fan-out children) is given; defaults are the flow's."""

    options_name: ClassVar[str] = "ingest options"

    batch_size: int = Field(100, ge=1)
    max_file_mb: float = Field(50, gt=0)
    fail_percentage: float = Field(0, ge=0, le=100)
    max_error_rate: float = Field(0.1, ge=0, le=1)  # a fraction of the new items
    extractor: Extractor = "rules"
    seed: int = 0
    database_block: str = Field(min_length=1)
    ingest_schema: str = DEFAULT_SCHEMA
    s3_block: str | None = None
    llm_block: str | None = None
    inline_binary_kb: float = Field(1024, ge=0)

    @field_validator("ingest_schema")
    @classmethod
    def _schema_is_a_name(cls, value: str) -> str:
        return validate_table_name(value)

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
