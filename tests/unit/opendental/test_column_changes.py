"""A source column changed in place (wider type, other charset) reaches the replica intact."""

from __future__ import annotations

from clinicflow.connectors.mysql.catalog import CatalogColumn
from clinicflow.opendental.replication.replica_columns import column_changes
from clinicflow.opendental.tables.config import TableConfig

PATIENT = TableConfig(
    primary_key=["PatNum"], extraction_strategy="incremental", incremental_columns=["DateTStamp"], batch_size=500
)


def _col(
    name: str, column_type: str = "varchar(10)", nullable: bool = False, collation: str = "utf8mb3_general_ci"
) -> CatalogColumn:
    return CatalogColumn(name, column_type.split("(")[0], column_type, nullable, collation=collation)


def test_column_changes_names_each_difference() -> None:
    replica = [_col("a"), _col("b"), _col("c", "int(11)", collation=""), _col("gone")]
    source = [
        _col("a"),
        _col("b", "varchar(80)"),
        _col("c", "int(11)", nullable=True, collation=""),
        _col("new", "date", collation=""),
    ]
    assert column_changes(replica, replica) == []
    assert column_changes(source, replica) == [
        "new added",
        "gone removed",
        "b varchar(10) -> varchar(80)",
        "c NOT NULL -> NULL",
    ]
    latin = [_col("a"), _col("b", collation="latin1_swedish_ci")]
    assert column_changes(latin, [_col("a"), _col("b")]) == ["b collation utf8mb3_general_ci -> latin1_swedish_ci"]
    assert column_changes([_col("b"), _col("a")], [_col("a"), _col("b")]) == ["column order"]
