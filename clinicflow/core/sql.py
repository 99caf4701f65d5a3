"""The one place SQL identifiers are validated and quoted.

Every table or column name that reaches a SQL string goes through
``quote_ident``; nothing else in the project builds quoted identifiers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal

from clinicflow.core.errors import ClinicflowError

Dialect = Literal["mysql", "postgres", "clickhouse"]

# OpenDental and generated tables use plain ASCII names; anything else in
# tables.yml is far more likely a typo or an injection attempt than a table.
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")


class IdentifierError(ClinicflowError, ValueError):
    """An identifier that cannot be used safely."""


def validate_table_name(name: str) -> str:
    """Return ``name`` if it is a plain table name, else raise IdentifierError."""
    if not isinstance(name, str) or not _TABLE_NAME.match(name):
        raise IdentifierError(
            f"invalid table name {name!r}: use letters, digits, '_' or '$', "
            "starting with a letter or '_', at most 64 characters"
        )
    return name


def quote_ident(name: str, dialect: Dialect) -> str:
    """Quote one identifier for MySQL/MariaDB or ClickHouse (backticks) or PostgreSQL (double quotes)."""
    if not name or "\x00" in name:
        raise IdentifierError(f"invalid identifier {name!r}")
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    if dialect == "clickhouse":
        return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
    if dialect == "postgres":
        return '"' + name.replace('"', '""') + '"'
    raise ValueError(f"unknown SQL dialect {dialect!r}")


def quote_qualified(schema: str, name: str, dialect: Dialect) -> str:
    """Quote ``schema.name``."""
    return f"{quote_ident(schema, dialect)}.{quote_ident(name, dialect)}"


def quote_list(names: list[str] | tuple[str, ...], dialect: Dialect) -> str:
    """Quote a comma-separated column list."""
    return ", ".join(quote_ident(n, dialect) for n in names)


PG_IDENT_MAX = 63


def pg_truncation_collisions(names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of column names that are one name once PostgreSQL truncates identifiers to 63 bytes."""
    seen: dict[bytes, str] = {}
    pairs = []
    for name in names:
        key = name.encode("utf-8")[:PG_IDENT_MAX]
        if key in seen:
            pairs.append((seen[key], name))
        else:
            seen[key] = name
    return pairs


def short_pg_ident(name: str) -> str:
    """Keep PostgreSQL identifiers within 63 bytes, stable and unique via a hash suffix."""
    if len(name.encode()) <= PG_IDENT_MAX:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return name.encode()[: PG_IDENT_MAX - 9].decode("utf-8", "ignore") + "_" + digest
