"""reconcile_slices unset (0): the sweep is sized from the table's compared ranges and bytes."""

from __future__ import annotations

from clinicflow.opendental.sweep import (
    AUTO_FULL_BYTES,
    AUTO_FULL_RANGES,
    AUTO_MAX_SLICES,
    Sweep,
    load_verification_sweep,
    sweep_for,
)
from clinicflow.opendental.tables.config import TableConfig


def test_small_tables_are_checksummed_in_full_and_large_ones_in_bounded_slices() -> None:
    assert Sweep(slices=0).sized(AUTO_FULL_RANGES).slices == 1
    assert Sweep(slices=0).sized(10 * AUTO_FULL_RANGES).slices == 10  # 1M rows: found within 10 nights
    assert Sweep(slices=0).sized(100 * AUTO_FULL_RANGES).slices == AUTO_MAX_SLICES
    assert Sweep(slices=0).sized(20, 200 << 20).slices == -(-(200 << 20) // AUTO_FULL_BYTES)  # 200 MB of documents
    assert Sweep(slices=7).sized(1, 10**12).slices == 7  # tables.yml's value wins
    assert Sweep(slices=0).sized(5).describe() == "keys+checksums"


def test_a_full_loads_verification_keeps_the_tables_slices_and_compares_keys_and_checksums() -> None:
    keys_only = TableConfig(primary_key=["Id"], reconcile_checksums=False, reconcile_slices=7)
    verified = load_verification_sweep(sweep_for(keys_only))
    assert (verified.keys, verified.checksums, verified.slices) == (True, True, 7)
    assert verified.hashed_ranges(range(70)) == ((verified.night % 7) * 10, (verified.night % 7 + 1) * 10)
    off = TableConfig(primary_key=["Id"], reconcile_keys=False, reconcile_checksums=False)
    assert load_verification_sweep(sweep_for(off)).describe() == "keys+checksums"  # sized at run time
    assert load_verification_sweep(sweep_for(keys_only, full_sweep=True)).hashed_ranges(range(70)) == (0, 70)
