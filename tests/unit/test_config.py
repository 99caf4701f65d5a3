"""tables.yml validation: every malformed file names the table and the field."""

from __future__ import annotations

import pytest

from clinicflow.opendental.tables.config import (
    ConfigError,
    ExtractionStrategy,
    load_tables_config,
    parse_tables_config,
)


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_tables_config(data)
    return str(info.value)


def test_unknown_key_names_table_and_field() -> None:
    msg = _error({"tables": {"patient": {"primary_key": ["PatNum"], "batchsize": 10}}})
    assert "'patient'" in msg
    assert "'batchsize'" in msg


def test_wrong_type_names_table_and_field() -> None:
    msg = _error({"tables": {"procedurelog": {"batch_size": "lots"}}})
    assert "'procedurelog'" in msg
    assert "'batch_size'" in msg


def test_unknown_strategy_names_table_and_field() -> None:
    msg = _error({"tables": {"claim": {"extraction_strategy": "sometimes"}}})
    assert "'claim'" in msg
    assert "'extraction_strategy'" in msg


def test_incremental_without_columns_names_table_and_field() -> None:
    msg = _error({"tables": {"payment": {"primary_key": ["PayNum"], "extraction_strategy": "incremental"}}})
    assert "'payment'" in msg
    assert "'incremental_columns'" in msg


def test_invalid_table_name_is_rejected() -> None:
    msg = _error({"tables": {"patient; drop table x": {}}})
    assert "invalid table name" in msg


def test_override_is_validated_and_applied() -> None:
    cfg = parse_tables_config(
        {"tables": {"patient": {"primary_key": ["PatNum"], "tier": 1}}, "overrides": {"patient": {"batch_size": 7}}}
    )
    assert cfg.effective("patient").batch_size == 7
    msg = _error({"tables": {"patient": {}}, "overrides": {"patient": {"tier": "top"}}})
    assert "'patient'" in msg
    assert "tier" in msg


def test_tiers_order_critical_first() -> None:
    cfg = parse_tables_config({"tables": {"definition": {"tier": 3}, "patient": {"tier": 1}, "claim": {"tier": 1}}})
    assert cfg.by_tier() == [(1, ["claim", "patient"]), (3, ["definition"])]


def test_project_tables_yml_is_valid() -> None:
    cfg = load_tables_config()
    assert cfg.tables, "tables.yml lists no table"
    securitylog = cfg.effective("securitylog")
    assert securitylog.extraction_strategy is ExtractionStrategy.incremental_chunked


def test_every_name_the_project_makes_is_reserved_in_tables_yml() -> None:
    from clinicflow.opendental.replication import copy_plan
    from clinicflow.opendental.tables.config import MAX_TABLE_NAME, RESERVED_SUFFIXES, reserved_name_error
    from clinicflow.opendental.warehouse import ddl, load_plan

    assert copy_plan.SHADOW_SUFFIX in RESERVED_SUFFIXES
    assert copy_plan.OLD_SUFFIX in RESERVED_SUFFIXES
    for name in (
        copy_plan.STATE_TABLE,
        load_plan.STAGE_SCHEMA,
        ddl.replaced_schema(load_plan.STAGE_SCHEMA),
        "patient" + copy_plan.SHADOW_SUFFIX,
        "patient" + copy_plan.OLD_SUFFIX,
        "patient__cf_stage",
    ):
        assert reserved_name_error(name) is not None, name
    longest = "t" * MAX_TABLE_NAME
    assert reserved_name_error(longest) is None
    assert all(len(longest + suffix) <= 64 for suffix in RESERVED_SUFFIXES)
    assert reserved_name_error(longest + "t") is not None
