"""Which source column changes the replica takes in place (ALTER ... MODIFY) instead of a full copy."""

from __future__ import annotations

import pytest

from clinicflow.connectors.mysql.catalog import CatalogColumn
from clinicflow.opendental.replication.copy_plan import _column_definitions, is_widening


def c(data_type: str, column_type: str, collation: str = "", nullable: bool = True) -> CatalogColumn:
    return CatalogColumn("x", data_type, column_type, nullable, collation=collation)


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        (c("int", "int(11)"), c("bigint", "bigint(20)"), True),
        (c("bigint", "bigint(20)"), c("int", "int(11)"), False),
        (c("int", "int(11)"), c("int", "int(10) unsigned"), False),
        (c("varchar", "varchar(50)", "utf8mb4_general_ci"), c("varchar", "varchar(255)", "utf8mb4_general_ci"), True),
        (c("varchar", "varchar(255)", "utf8mb4_general_ci"), c("varchar", "varchar(50)", "utf8mb4_general_ci"), False),
        (c("decimal", "decimal(10,2)"), c("decimal", "decimal(14,4)"), True),
        (c("decimal", "decimal(10,2)"), c("decimal", "decimal(10,4)"), False),
        (c("varchar", "varchar(20)", "utf8mb3_general_ci"), c("varchar", "varchar(20)", "utf8mb4_general_ci"), True),
        (c("varchar", "varchar(20)", "utf8mb4_general_ci"), c("varchar", "varchar(20)", "latin1_swedish_ci"), False),
        (c("text", "text", "utf8mb4_bin"), c("mediumtext", "mediumtext", "utf8mb4_bin"), True),
        (c("int", "int(11)"), c("bigint", "bigint(20)", nullable=False), False),
        (c("int", "int(11)"), c("varchar", "varchar(20)", "utf8mb4_general_ci"), False),
    ],
)
def test_widenings(old: CatalogColumn, new: CatalogColumn, ok: bool) -> None:
    assert is_widening(old, new) is ok


def test_column_definitions_from_show_create_table() -> None:
    ddl = (
        "CREATE TABLE `t` (\n  `Id` int(11) NOT NULL,\n  `we``ird` varchar(5) DEFAULT NULL,\n"
        "  PRIMARY KEY (`Id`)\n) ENGINE=InnoDB"
    )
    assert _column_definitions(ddl) == {"Id": "`Id` int(11) NOT NULL", "we`ird": "`we``ird` varchar(5) DEFAULT NULL"}
