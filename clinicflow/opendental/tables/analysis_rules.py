"""The rules of schema analysis: thresholds, critical tables, and how a run overrides them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from clinicflow.core.errors import ClinicflowError

MIB = 1024 * 1024


# Values below this are "unset" in OpenDental ('0001-01-01') or MySQL zero
# dates ('0000-00-00'): they are not evidence for or against a watermark.
UNSET_DATE_LIMIT = "0001-01-02 00:00:00"


DEFAULT_CRITICAL_TABLES: tuple[str, ...] = (
    "patient",
    "appointment",
    "procedurelog",
    "claimproc",
    "claim",
    "payment",
    "paysplit",
    "adjustment",
    "insplan",
    "inssub",
    "patplan",
    "provider",
)


class AnalysisError(ClinicflowError):
    """The analysis cannot produce a valid tables.yml. The message names the table or field."""


@dataclass(frozen=True)
class AnalysisRules:
    """The knobs of the analysis. Defaults suit an OpenDental practice database."""

    # Edit-tracking columns, best first. Columns with ON UPDATE current_timestamp()
    # rank right after these; entry-date columns come last.
    edit_columns: tuple[str, ...] = ("DateTStamp", "SecDateTEdit")
    entry_columns: tuple[str, ...] = ("SecDateTEntry", "DateTEntry")
    critical_tables: tuple[str, ...] = DEFAULT_CRITICAL_TABLES
    critical_tier: int = 1
    default_tier: int = 3
    # Tables with at most this many rows and megabytes are copied fully every night (when changed).
    full_copy_max_rows: int = 1_000
    full_copy_max_mb: float = 16.0
    # Tables with at least this many rows, or this size, are split into key ranges.
    chunked_min_rows: int = 500_000
    chunked_min_mb: float = 256.0
    # Keyed tables with at least this many rows get their row checksums compared one
    # slice of key ranges a night (reconcile_slices), a full sweep every `weekly_slices` nights;
    # their keys are still compared in full every night (docs/loading.md, Reconciliation). Other
    # tables get none written (0): their slices are sized each night from the live table.
    sliced_checksum_min_rows: int = 1_000_000
    weekly_slices: int = 7
    # batch_size aims at chunks of about this size, within these bounds.
    target_chunk_mb: float = 16.0
    min_batch_size: int = 1_000
    max_batch_size: int = 200_000
    # Sampling: tables up to small_table_rows are read whole; larger ones by
    # their newest sample_rows rows along the primary key index.
    sample_rows: int = 5_000
    small_table_rows: int = 50_000
    # A watermark candidate needs this share of real values in the sample.
    min_real_share: float = 0.95
    earliest_plausible: str = "1980-01-01 00:00:00"
    future_tolerance: timedelta = timedelta(days=1)

    def tier_of(self, table: str) -> int:
        critical = {name.lower() for name in self.critical_tables}
        return self.critical_tier if table.lower() in critical else self.default_tier


def rules_with(rules: AnalysisRules | None = None, **changes: Any) -> AnalysisRules:
    """A copy of ``rules`` (default rules if None) with some fields changed; None values are ignored."""
    return dataclasses.replace(rules or AnalysisRules(), **{k: v for k, v in changes.items() if v is not None})
