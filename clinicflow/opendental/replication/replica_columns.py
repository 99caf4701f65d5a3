"""The replicator's view of the catalog: the columns a copy moves, and how the replica's differ from the source's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from clinicflow.connectors.mysql.catalog import CatalogColumn, CatalogTable


def replica_columns(table: CatalogTable) -> list[CatalogColumn]:
    """The copyable columns of ``table`` in order, their COLUMN_TYPE in lower case (as the replicator compares them).

    Generated columns are left out: the replica computes them itself.
    """
    return [replace(c, column_type=c.column_type.lower()) for c in table.columns if not c.generated]


def column_changes(source: Sequence[CatalogColumn], replica: Sequence[CatalogColumn]) -> list[str]:
    """How the replica's columns differ from the source's (empty: same names, order, types, nullability, collation).

    Any difference means the replica's DDL is stale: an incremental copy into
    it could truncate a widened value or store text in the old charset.
    """
    old = {c.name: c for c in replica}
    new = {c.name: c for c in source}
    changes = [f"{name} added" for name in new if name not in old]
    changes += [f"{name} removed" for name in old if name not in new]
    for name, col in new.items():
        before = old.get(name)
        if before is None:
            continue
        if before.column_type != col.column_type:
            changes.append(f"{name} {before.column_type} -> {col.column_type}")
        if before.nullable != col.nullable:
            changes.append(
                f"{name} {'NULL' if before.nullable else 'NOT NULL'} -> {'NULL' if col.nullable else 'NOT NULL'}"
            )
        if before.collation != col.collation:
            changes.append(f"{name} collation {before.collation or 'none'} -> {col.collation or 'none'}")
    if not changes and [c.name for c in source] != [c.name for c in replica]:
        changes.append("column order")
    return changes
