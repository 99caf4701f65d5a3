"""How one table is loaded into PostgreSQL ``raw``: the load plan built from the replica's catalog and tables.yml."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from clinicflow.connectors.mysql.catalog import CatalogIndex, CatalogTable
from clinicflow.core.sql import PG_IDENT_MAX, pg_truncation_collisions
from clinicflow.opendental.tables.config import TableConfig
from clinicflow.opendental.tables.typemap import (
    PgColumn,
    UnsupportedTypeError,
    map_column,
)
from clinicflow.opendental.warehouse.load_errors import LoadError

RAW_SCHEMA = "raw"


STAGE_SCHEMA = "clinicflow_stage"


STATE_SCHEMA = "clinicflow"


LOAD_STATE_TABLE = "load_state"


@dataclass(frozen=True)
class LoadPlan:
    """Everything the chunk loaders need about one table (picklable, passed between tasks)."""

    table: str
    columns: tuple[PgColumn, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[CatalogIndex, ...]
    incremental_columns: tuple[str, ...]
    batch_size: int
    raw_schema: str = RAW_SCHEMA
    stage_schema: str = STAGE_SCHEMA
    state_schema: str = STATE_SCHEMA

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def keyset_columns(self) -> tuple[str, ...]:
        """Incremental columns then primary key columns not already among them."""
        return self.incremental_columns + tuple(c for c in self.primary_key if c not in self.incremental_columns)

    @property
    def mapping_signature(self) -> str:
        """Changes when the PostgreSQL shape of the table changes (forces a reload of an unchanged table)."""
        text = json.dumps([[c.name, c.pg_type, c.kind.value] for c in self.columns] + [list(self.primary_key)])
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def column(self, name: str) -> PgColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


def plan_load(
    source: CatalogTable,
    config: TableConfig,
    *,
    raw_schema: str = RAW_SCHEMA,
    stage_schema: str = STAGE_SCHEMA,
    state_schema: str = STATE_SCHEMA,
) -> LoadPlan:
    """Map every column (typemap) and check tables.yml against the live table."""
    table = source.name
    names = {c.name for c in source.columns}
    for field_name, wanted in (
        ("boolean_columns", config.boolean_columns),
        ("incremental_columns", config.incremental_columns),
        ("primary_key", config.primary_key),
    ):
        missing = [c for c in wanted if c not in names]
        if missing:
            raise LoadError(
                f"table {table!r}: tables.yml {field_name} names column(s) {missing} "
                "that the replicated table does not have"
            )
    collisions = pg_truncation_collisions([c.name for c in source.columns])
    if collisions:
        detail = "; ".join(f"{a!r} and {b!r}" for a, b in collisions)
        raise LoadError(
            f"table {table!r}: column names that PostgreSQL would cut to the same {PG_IDENT_MAX} bytes: {detail}"
        )
    booleans = set(config.boolean_columns)
    try:
        columns = tuple(map_column(c, boolean=c.name in booleans) for c in source.columns)
    except UnsupportedTypeError as exc:
        raise LoadError(f"table {table!r}: {exc}") from None
    # The live primary key wins over tables.yml (it is what makes ON CONFLICT valid).
    primary_key = source.primary_key or tuple(config.primary_key)
    incremental = tuple(config.incremental_columns) if (config.is_incremental and primary_key) else ()
    return LoadPlan(
        table,
        columns,
        tuple(primary_key),
        source.indexes,
        incremental,
        config.batch_size,
        raw_schema,
        stage_schema,
        state_schema,
    )
