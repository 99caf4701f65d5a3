"""Tonight's sweep of one table: what the reconciliation compares (keys everywhere, row checksums in one slice)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from clinicflow.opendental.chunks import KeyRange

# A table whose tables.yml sets no reconcile_slices (0: sized here) is checksummed in full every night up to
# this many compared ranges (~100 rows each); a larger one in ceil(ranges / AUTO_FULL_RANGES) slices, one a
# night, at most AUTO_MAX_SLICES: a silent update is found within that many nights (docs/loading.md).
AUTO_FULL_RANGES = 1_000
AUTO_MAX_SLICES = 14
# ... and past this many bytes (a table of large documents: its checksums read every value), one slice per
# AUTO_FULL_BYTES, within the same bound: about the bytes of a row table's nightly 100,000 rows.
AUTO_FULL_BYTES = 16 << 20


@dataclass(frozen=True)
class Sweep:
    """What tonight compares for one table: keys of the whole table, row checksums in one slice of the ranges.

    ``slices=7`` checksums one seventh of the ranges each night, a contiguous
    block of them (a full sweep a week), for tables too large to checksum
    nightly; ``slices=1`` every range; ``slices=0`` sized by the table (:meth:`sized`).
    """

    keys: bool = True
    checksums: bool = True
    slices: int = 1
    night: int = field(default_factory=lambda: dt.date.today().toordinal())

    def sized(self, ranges: int, data_bytes: int = 0) -> Sweep:
        """This sweep with ``slices=0`` resolved for a table of ``ranges`` compared ranges and ``data_bytes``."""
        if self.slices:
            return self
        wanted = max(-(-ranges // AUTO_FULL_RANGES), -(-data_bytes // AUTO_FULL_BYTES))
        return replace(self, slices=min(AUTO_MAX_SLICES, max(1, wanted)))

    @property
    def enabled(self) -> bool:
        return self.keys or self.checksums

    @property
    def slice_index(self) -> int:
        return self.night % max(self.slices, 1)

    def hashed_ranges(self, ranges: Sequence[KeyRange]) -> tuple[int, int]:
        """Tonight's slice as range indexes ``[first, end)``: contiguous, so one key interval."""
        if not self.checksums:
            return 0, 0
        if self.slices <= 1:
            return 0, len(ranges)
        n = len(ranges)
        return self.slice_index * n // self.slices, (self.slice_index + 1) * n // self.slices

    def describe(self) -> str:
        if not self.enabled:
            return "off"
        parts = ["keys"] if self.keys else []
        if self.checksums:
            parts.append("checksums" if self.slices <= 1 else f"checksums slice {self.slice_index + 1}/{self.slices}")
        return "+".join(parts)


def load_verification_sweep(sweep: Sweep) -> Sweep:
    """A full load's verification: counts and key sums (the table's; every range's if those differ), row checksums.

    The row checksums are those of ``sweep``'s slice, tonight's slice of the nightly reconciliation: the next
    nights' slices compare the rest of the values.
    """
    return replace(sweep, keys=True, checksums=True)


def sweep_for(config: Any, *, full_sweep: bool = False) -> Sweep:
    """Tonight's sweep of a table from its tables.yml settings; ``full_sweep`` checks everything."""
    if full_sweep:
        return Sweep(keys=True, checksums=True, slices=1)
    return Sweep(keys=config.reconcile_keys, checksums=config.reconcile_checksums, slices=config.reconcile_slices)
