"""Thin Prefect task around clinicflow.opendental.cdc: one CDC run of a source (until stopped or its time is up)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.opendental.cdc.runner import CdcOptions, CdcReport, CdcRunner
from clinicflow.opendental.tables.config import TablesConfig

# NO_CACHE: parameters hold credential blocks. No retries: a restart resumes from the stored position, and the
# deployment's next run does that.


@task(name="cdc-run", cache_policy=NO_CACHE)
def run_cdc(
    src: MySQLServer, replica: MySQLServer, pg: PostgresServer, config: TablesConfig, options: CdcOptions
) -> CdcReport:
    return CdcRunner(src, replica, pg, config, options).run()


def report_row(report: CdcReport) -> dict[str, Any]:
    """The run's figures as one artifact row."""
    return {
        "source": report.source,
        "position": str(report.position or ""),
        "events": report.events,
        "batches": report.batches,
        "rows": report.rows,
        "snapshot": report.snapshot,
        "failed tables": ", ".join(report.failed_tables),
    }
