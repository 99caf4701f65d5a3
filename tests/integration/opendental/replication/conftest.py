"""Replication fixtures: a seeded OpenDental-shaped source and an empty replica, both real MariaDB databases."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from blocks.databases import MySQLServer
from clinicflow_dev import generator


@pytest.fixture
def source(make_mysql_db: Callable[[str], MySQLServer]) -> MySQLServer:
    server = make_mysql_db("src")
    generator.seed(server)
    return server


@pytest.fixture
def replica(make_mysql_db: Callable[[str], MySQLServer]) -> MySQLServer:
    return make_mysql_db("repl")


@pytest.fixture
def point_blocks_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[MySQLServer, MySQLServer], None]:
    """Make the resolver's env mode build the source/replication blocks for these test databases."""

    def point(src: MySQLServer, dst: MySQLServer) -> None:
        monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
        monkeypatch.setenv("CLINICFLOW_OPENDENTAL_SOURCE_DATABASE", src.database)
        monkeypatch.setenv("CLINICFLOW_OPENDENTAL_REPLICATION_DATABASE", dst.database)

    return point


def write_tables_file(path: Path, tables: dict[str, dict]) -> str:
    path.write_text(yaml.safe_dump({"version": 1, "tables": tables}, sort_keys=True))
    return str(path)


def demo_tables(batch_size: int = 700) -> dict[str, dict]:
    """tables.yml entries for the generator's demo tables, with small chunks to exercise boundaries."""

    def inc(key: str, col: str, tier: int = 1) -> dict:
        return {
            "primary_key": [key],
            "extraction_strategy": "incremental",
            "incremental_columns": [col],
            "batch_size": batch_size,
            "tier": tier,
        }

    return {
        "patient": inc("PatNum", "DateTStamp"),
        "procedurelog": inc("ProcNum", "DateTStamp"),
        "payment": inc("PayNum", "SecDateTEdit"),
        "claimproc": inc("ClaimProcNum", "SecDateTEdit", 2),
        "securitylog": {
            "primary_key": ["SecurityLogNum"],
            "extraction_strategy": "incremental_chunked",
            "incremental_columns": ["SecurityLogNum"],
            "batch_size": 3000,
            "tier": 3,
        },
        "patplan": {
            "primary_key": ["PatNum", "Ordinal"],
            "extraction_strategy": "incremental",
            "incremental_columns": ["SecDateTEdit"],
            "batch_size": 200,
            "tier": 2,
        },
        "definition": {"primary_key": ["DefNum"], "batch_size": 50, "tier": 2},
        "entrylog": {"primary_key": [], "tier": 3},
        "edgecase": {
            "primary_key": ["EdgeCaseNum"],
            "extraction_strategy": "incremental",
            "incremental_columns": ["DateTStamp"],
            "batch_size": 2,
            "tier": 3,
        },
    }


PROJECT_ROOT = Path(__file__).resolve().parents[4]
PYTHON = os.path.join(PROJECT_ROOT, ".venv", "bin", "python")
