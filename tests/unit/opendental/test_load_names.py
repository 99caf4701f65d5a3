"""Names and keys PostgreSQL treats differently from MariaDB: quoted JSON column names, 63-byte
identifier truncation, and primary keys that differ only by NUL bytes (removed on the way)."""

from __future__ import annotations

from clinicflow.connectors.mysql import catalog


def test_json_check_column_parses_only_json_valid_checks() -> None:
    assert catalog.json_check_column("json_valid(`my doc`)") == "my doc"
    assert catalog.json_check_column(" JSON_VALID ( `a``b` ) ") == "a`b"
    assert catalog.json_check_column("`x` > 0") is None
    assert catalog.json_check_column("json_valid(`a`) and `b` > 0") is None
