"""The options of one nightly run (``nightly_etl``, ``load_tables``), validated before any work.

Flow ``nightly_etl`` builds :class:`NightlyOptions` from its parameters (and :class:`NightlyFanOut` from
its fan-out parameters) in one place; a fanned-out night gives the options whole to each
``nightly_tables`` child, with the partition's tables (:meth:`NightlyOptions.for_partition`).
Block names have no default here: the blocks package owns them.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from clinicflow.core.options import FanOutOptions, RunOptions
from clinicflow.opendental.warehouse.load_steps import LoadOptions


class NightlyOptions(RunOptions):
    """What a night (or one partition of a fanned-out night) replicates and loads, and how."""

    options_name: ClassVar[str] = "nightly options"

    tables: list[str] | None = None  # None: every table of tables.yml
    full_refresh: bool = False
    skip_verification: bool = False
    full_sweep: bool = False
    tables_file: str | None = None
    allow_empty: bool = False
    source_block: str = Field(min_length=1)
    replica_block: str = Field(min_length=1)
    analytics_block: str = Field(min_length=1)

    def load_options(self) -> LoadOptions:
        return LoadOptions(
            full_refresh=self.full_refresh, verify=not self.skip_verification, full_sweep=self.full_sweep
        )

    def blocks(self) -> dict[str, str]:
        return {
            "source_block": self.source_block,
            "replica_block": self.replica_block,
            "analytics_block": self.analytics_block,
        }

    def for_partition(self, tables: list[str]) -> NightlyOptions:
        """These options for a child run of a fanned-out night that replicates and loads ``tables``."""
        if not tables:  # no tables would mean "all of tables.yml"
            raise ValueError("nightly: a partition names at least one table")
        return self.model_copy(update={"tables": list(tables), "allow_empty": False})


class NightlyFanOut(FanOutOptions):
    """``mode="fanout"``: each tier's tables (or groups of small tables) as child runs, ``fanout_width`` at a
    time; ``concurrency_limit``: the global limit the children hold a slot of (one per clinic)."""

    options_name: ClassVar[str] = "nightly fan-out options"

    concurrency_limit: str | None = None
