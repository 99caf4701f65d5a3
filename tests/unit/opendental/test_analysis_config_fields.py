"""The two tables.yml fields the schema analysis records: column_types and observed_watermark."""

from __future__ import annotations

import pytest

from clinicflow.opendental.tables.config import ConfigError, parse_tables_config


def test_column_types_and_observed_watermark_load() -> None:
    cfg = parse_tables_config(
        {
            "tables": {
                "patient": {
                    "primary_key": ["PatNum"],
                    "columns": ["PatNum", "DateTStamp"],
                    "column_types": {
                        "PatNum": "bigint(20) not null auto_increment",
                        "DateTStamp": "timestamp not null on update current_timestamp()",
                    },
                    "observed_watermark": "2024-05-01 10:00:00",
                }
            }
        }
    )
    patient = cfg.effective("patient")
    assert patient.column_types["DateTStamp"].startswith("timestamp")
    assert patient.observed_watermark == "2024-05-01 10:00:00"


def test_blank_column_type_names_table_and_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_tables_config({"tables": {"claim": {"column_types": {"ClaimNum": ""}}}})
    assert "'claim'" in str(info.value)
    assert "column_types" in str(info.value)


def test_wrong_type_observed_watermark_names_table_and_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_tables_config({"tables": {"securitylog": {"observed_watermark": ["x"]}}})
    assert "'securitylog'" in str(info.value)
    assert "observed_watermark" in str(info.value)
