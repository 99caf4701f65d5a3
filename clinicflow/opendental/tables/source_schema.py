"""The schema analysis's view of the live source: its base tables (the one catalog reader's), and their fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from clinicflow.connectors.connections import connected
from clinicflow.connectors.mysql.catalog import CatalogColumn, CatalogTable, read_catalog
from clinicflow.connectors.protocols import MySQLServerLike
from clinicflow.core.dbapi import Connection


def definition(col: CatalogColumn) -> str:
    """Type, nullability and the attributes that matter for copying, as recorded in tables.yml."""
    parts = [col.column_type.lower()]
    if not col.nullable:
        parts.append("not null")
    if col.auto_increment:
        parts.append("auto_increment")
    if col.on_update:
        parts.append("on update current_timestamp()")
    return " ".join(parts)


@dataclass(frozen=True)
class SourceSchema:
    database: str
    address: str  # block.describe(): never holds a password
    tables: Mapping[str, CatalogTable]

    def fingerprint(self) -> str:
        """sha256 of the structure only (tables, columns, keys): data changes do not move it."""
        canonical = {
            name: {
                "columns": [[c.name, definition(c)] for c in info.columns],
                "primary_key": list(info.primary_key),
            }
            for name, info in sorted(self.tables.items())
        }
        payload = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(payload).hexdigest()


def read_schema(server: MySQLServerLike) -> SourceSchema:
    """Read the whole schema of the block's database (one catalog pass, not one per table)."""
    with connected(server) as conn:
        return read_schema_with(conn, server.database, server.describe())


def read_schema_with(conn: Connection, database: str, address: str) -> SourceSchema:
    """Like :func:`read_schema`, on an open connection: the base tables only (no views, sequences or
    system-versioned tables)."""
    tables = {name: t for name, t in read_catalog(conn, database).items() if t.table_type == "BASE TABLE"}
    return SourceSchema(database=database, address=address, tables=tables)
