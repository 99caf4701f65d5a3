"""Small tables, replicated and loaded one after the other in one unit of work (a task run costs more than they do)."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from clinicflow.core.logs import get_logger
from clinicflow.core.retry import call_with_retry
from clinicflow.opendental.metrics import TableOutcome
from clinicflow.opendental.replication import replica_copy
from clinicflow.opendental.tables.config import TableConfig
from clinicflow.opendental.warehouse.load_steps import LoadOptions, failed_outcome, load_table_once

_DEFAULT_OPTIONS = LoadOptions()


def replicate_and_load_small(
    source_server: Any,
    replica_server: Any,
    pg_server: Any,
    configs: dict[str, TableConfig],
    options: LoadOptions = _DEFAULT_OPTIONS,
    *,
    replicate: bool = True,
) -> list[TableOutcome]:
    """Replicate (optionally) and load a group of small tables one after the other, in one task.

    For a table of a few hundred rows, a Prefect task run costs more than the
    copy itself; the nightly flow hands small tables over in groups. Each
    table is still its own unit: its steps are retried on transient errors
    (the project policy), and a failure is recorded for that table only.
    """
    log = get_logger()
    outcomes = []
    for table, config in configs.items():
        started = time.time()
        info = None
        if replicate:
            try:
                result = call_with_retry(
                    partial(
                        replica_copy.replicate_table_once,
                        source_server,
                        replica_server,
                        table,
                        config,
                        full_refresh=options.full_refresh,
                        full_sweep=options.full_sweep,
                    ),
                    what=f"replicate {table}",
                    logger=log,
                )
                info = {"rows": result["rows"], "seconds": result["seconds"], "reconciled": result["reconciled"]}
            except Exception as exc:  # noqa: BLE001 - recorded for this table, the group goes on
                outcomes.append(failed_outcome(table, exc, stage="replication", started=started))
                continue
        try:
            outcome = call_with_retry(
                partial(load_table_once, replica_server, pg_server, table, config, options, replication=info),
                what=f"load {table}",
                logger=log,
            )
        except Exception as exc:  # noqa: BLE001 - recorded for this table, the group goes on
            outcome = failed_outcome(table, exc, stage="load", started=started, replication=info)
        outcomes.append(outcome)
    return outcomes
