"""Which tables of tables.yml a run works on: the requested ones, each checked, or all of them."""

from __future__ import annotations

from clinicflow.opendental.tables.config import ConfigError, TablesConfig


def select_tables(config: TablesConfig, tables: list[str] | None, *, allow_empty: bool = False) -> list[str]:
    """The requested tables, each checked against tables.yml; none at all is an error unless ``allow_empty``."""
    if not tables:
        if not config.tables and not allow_empty:
            raise ConfigError(
                "tables.yml lists no tables: nothing would run (pass --allow-empty / "
                "allow_empty=True if that is intended)"
            )
        return sorted(config.tables)
    unknown = [t for t in tables if t not in config.tables]
    if unknown:
        raise ConfigError(f"tables not in tables.yml: {', '.join(unknown)}")
    return list(dict.fromkeys(tables))
