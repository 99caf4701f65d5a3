"""Flow ``cdc_opendental``: the source's binlog applied to the replica and raw, as one long-lived run.

Wiring only: blocks resolved, one task runs the CDC loop (clinicflow/opendental/cdc) for ``max_seconds``
(the deployment starts the next run when this one ends, so a pod never lives for ever), then a table
artifact; the run ends Failed when a table was failed (the nightly copies it) or CDC could not start.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from blocks.databases import MySQLServer, PostgresServer
from blocks.resolve import ANALYTICS_BLOCK, REPLICATION_BLOCK, SOURCE_BLOCK, resolve_block
from clinicflow.core.errors import TablesFailed
from clinicflow.opendental.cdc.runner import CdcOptions, default_server_id
from clinicflow.opendental.guards import check_replica_is_not_source
from clinicflow.opendental.tables.config import load_tables_config
from tasks.cdc import report_row, run_cdc


@flow(name="cdc_opendental", log_prints=True)
def cdc_opendental(
    tables: list[str] | None = None,
    max_seconds: float | None = 86_100.0,
    server_id: int | None = None,
    batch_events: int = 5000,
    batch_seconds: float = 1.0,
    poll_seconds: float = 1.0,
    retention_hours: float = 24.0,
    until_caught_up: bool = False,
    tables_file: str | None = None,
    source_block: str = SOURCE_BLOCK,
    replica_block: str = REPLICATION_BLOCK,
    analytics_block: str = ANALYTICS_BLOCK,
) -> dict[str, object]:
    """Apply the OpenDental source's binlog to the replication MySQL and PostgreSQL raw (docs/cdc.md).

    Args:
        tables: tables to keep current (default: every table of tables.yml with a primary key).
        max_seconds: end the run after this long (None: until ``clinicflow cdc stop``).
        server_id: the replica server id CDC registers with (default: derived from the replica database).
        batch_events, batch_seconds: a batch is applied after this many changed rows or this long.
        poll_seconds: wait between reads of a caught-up binlog.
        retention_hours: the source must keep binlog files at least this long (checked before start).
        until_caught_up: stop once the binlog's end, as at the start of a read, is applied.
        tables_file: path of tables.yml (default: the project's, or $CLINICFLOW_TABLES_FILE).
        source_block, replica_block, analytics_block: the clinic's blocks.
    """
    config = load_tables_config(tables_file)
    src = resolve_block(source_block, MySQLServer)
    replica = resolve_block(replica_block, MySQLServer)
    pg = resolve_block(analytics_block, PostgresServer)
    check_replica_is_not_source(src, replica)
    options = CdcOptions(
        server_id=server_id or default_server_id(replica),
        tables=tables,
        batch_events=batch_events,
        batch_seconds=batch_seconds,
        poll_seconds=poll_seconds,
        retention_hours=retention_hours,
        until_caught_up=until_caught_up,
        max_seconds=max_seconds,
    )
    report = run_cdc(src, replica, pg, config, options)
    row = report_row(report)
    create_table_artifact(
        key="cdc-summary", table=[row], description=f"CDC {report.source}: {report.events} row events applied"
    )
    if report.failed_tables:
        raise TablesFailed(
            f"{len(report.failed_tables)} table(s) left to the nightly: "
            + "; ".join(f"{t}: {r}" for t, r in report.failed_tables.items())
        )
    return row
