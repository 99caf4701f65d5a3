"""The load chain of one table (prepare-load → load chunks → finish-load), after its replication chain when the
run replicates, and the tier runner of the nightly flows (``nightly_etl``, ``load_tables``, ``nightly_tables``).

Wiring only. Within a tier every table moves through its own chain of tasks,
each step submitted the moment the table's previous step finished, never
waiting for the rest of the tier:

    replication: plan → copy chunks (or one incremental run) → swap-in   (flows/replication_chain.py)
    load:        prepare-load (submitted with the swap-in future as its
                 dependency) → load chunks (full loads only) → finish-load

Small tables (tables.yml ``estimated_rows`` <= ``CLINICFLOW_SMALL_TABLE_ROWS``)
go in groups: one ``small-tables`` task replicates and loads each of them in
turn. One :class:`TableOutcome` per table.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from prefect.futures import PrefectFuture

from blocks.databases import MySQLServer, PostgresServer
from clinicflow.core import progress, settings
from clinicflow.opendental.metrics import TableOutcome
from clinicflow.opendental.tables.config import TablesConfig
from clinicflow.opendental.warehouse import load_steps
from flows.chains import Futures, TierRun, future_error
from flows.replication_chain import Copied, ReplicationChain
from tasks import load as load_tasks


class _ReportedOutcomes(dict[str, TableOutcome]):
    """The tier's outcomes; each one set is reported to the run's progress watchers (the terminal)."""

    def __init__(self, tier: int) -> None:
        super().__init__()
        self.tier = tier

    def __setitem__(self, table: str, outcome: TableOutcome) -> None:
        super().__setitem__(table, outcome)
        progress.table_done(self.tier, table, outcome.status, outcome.replication_rows, outcome.rows)


class LoadRun(TierRun):
    """The load chains of one tier, each after the table's replication chain when there is a ``source``."""

    def __init__(
        self,
        config: TablesConfig,
        replica: MySQLServer,
        pg: PostgresServer,
        options: load_steps.LoadOptions,
        *,
        source: MySQLServer | None,
        tier: int = 0,
    ) -> None:
        super().__init__(tier)
        self.config, self.replica, self.pg, self.options, self.source = config, replica, pg, options, source
        self.outcomes: dict[str, TableOutcome] = _ReportedOutcomes(tier)
        self.replication = (
            ReplicationChain(
                self,
                source,
                replica,
                config,
                full_refresh=options.full_refresh,
                full_sweep=options.full_sweep,
                then=self._replicated,
            )
            if source is not None
            else None
        )

    def fail(
        self, table: str, stage: str, error: BaseException | str, replication_info: dict[str, Any] | None = None
    ) -> None:
        self.outcomes[table] = load_steps.failed_outcome(
            table, error, stage=stage, started=self.started.get(table), replication=replication_info
        )

    def start(self, table: str) -> None:
        """The table's chain: replication then load (with a source), or the load alone."""
        if self.replication is not None:
            self.replication.start(table)
        else:
            self.load(table)

    def _replicated(self, table: str, copied: Copied) -> None:
        seconds = time.time() - self.started[table]
        if copied.plan.mode == "unchanged":
            return self.load(table, {"rows": 0, "seconds": seconds}, depends_on=None)
        info = {"rows": copied.rows, "seconds": seconds, "reconciled": copied.reconciled}
        # The load is submitted now, with the replication's last step (the swap-in) as its dependency.
        return self.load(table, info, depends_on=copied.swap)

    # --- small tables: replication and load together, in groups ---------------
    def small_group(self, tables: list[str]) -> None:
        for table in tables:
            self.started[table] = time.time()
        configs = {t: self.config.effective(t) for t in tables}
        label = f"{tables[0]}..{tables[-1]}" if len(tables) > 1 else tables[0]
        group_f = load_tasks.small_table_group.submit(self.source, self.replica, self.pg, configs, self.options, label)
        self.when_done(tables, "load", [group_f], lambda fs: self._small_done(tables, fs[0]))

    def _small_done(self, tables: list[str], group_f: PrefectFuture[Any]) -> None:
        if (err := future_error(group_f)) is not None:
            for table in tables:
                self.fail(table, "load", err)
            return
        for outcome in group_f.result():
            self.outcomes[outcome.table] = outcome

    # --- load -------------------------------------------------------------------
    def load(
        self, table: str, replication_info: dict[str, Any] | None = None, depends_on: PrefectFuture[Any] | None = None
    ) -> None:
        self.started.setdefault(table, time.time())
        wait_for = [depends_on] if depends_on is not None else None
        prepare_f = load_tasks.prepare_load.submit(
            self.replica,
            self.pg,
            table,
            self.config.effective(table),
            self.options,
            replication_info,
            wait_for=wait_for,
            return_state=False,
        )
        watched = [depends_on, prepare_f] if depends_on is not None else [prepare_f]
        self.when_done(table, "load", watched, lambda fs: self._chunks(table, fs, replication_info))

    def _chunks(self, table: str, futures: Futures, replication_info: dict[str, Any] | None) -> None:
        if len(futures) == 2 and (err := future_error(futures[0])) is not None:
            return self.fail(table, "replication swap-in", err, replication_info)
        prepare_f = futures[-1]
        if (err := future_error(prepare_f)) is not None:
            return self.fail(table, "load", err, replication_info)
        prepared = prepare_f.result()
        if isinstance(prepared, TableOutcome):
            self.outcomes[table] = prepared
            return None
        chunk_fs = [load_tasks.load_chunk.submit(self.replica, self.pg, prepared, chunk) for chunk in prepared.chunks]
        self.when_done(table, "load", chunk_fs, lambda fs: self._finish(table, prepared, fs, replication_info))
        return None

    def _finish(
        self, table: str, prepared: load_steps.FullLoad, chunk_fs: Futures, replication_info: dict[str, Any] | None
    ) -> None:
        for chunk_f in chunk_fs:
            if (err := future_error(chunk_f)) is not None:
                return self._failed_load(table, prepared, err, replication_info)
        finish_f = load_tasks.finish_load.submit(self.replica, self.pg, prepared, [f.result() for f in chunk_fs])
        self.when_done(table, "load", [finish_f], lambda fs: self._finished(table, prepared, fs[0], replication_info))
        return None

    def _finished(
        self,
        table: str,
        prepared: load_steps.FullLoad,
        finish_f: PrefectFuture[Any],
        replication_info: dict[str, Any] | None,
    ) -> None:
        if (err := future_error(finish_f)) is not None:
            return self._failed_load(table, prepared, err, replication_info)
        self.outcomes[table] = finish_f.result()
        return None

    def _failed_load(
        self,
        table: str,
        prepared: load_steps.FullLoad,
        err: BaseException | str,
        replication_info: dict[str, Any] | None,
    ) -> None:
        """The table fails; its staging table is dropped (raw keeps its previous content)."""
        self.fail(table, "load", err, replication_info)
        self.after([load_tasks.drop_stage.submit(self.pg, prepared)])


def run_tier_tables(
    config: TablesConfig,
    tier_names: list[str],
    replica: MySQLServer,
    pg: PostgresServer,
    options: load_steps.LoadOptions,
    *,
    source: MySQLServer | None,
    tier: int = 0,
) -> list[TableOutcome]:
    """Replicate (with a ``source``) and load the tables of one tier in this flow run's task runner; one outcome
    each."""
    progress.tier_started(tier, len(tier_names))
    run = LoadRun(config, replica, pg, options, source=source, tier=tier)
    rows_limit, group_size = settings.small_table_rows(), settings.small_group_size()
    small = [t for t in tier_names if config.effective(t).estimated_rows <= rows_limit]
    for start in range(0, len(small), group_size):
        group = small[start : start + group_size]
        run.submit(group, "load", partial(run.small_group, group))
    for table in tier_names:
        if table not in small:
            run.submit([table], "replication" if source is not None else "load", partial(run.start, table))
    run.run()
    return [
        run.outcomes.get(t) or load_steps.failed_outcome(t, "no outcome recorded", stage="flow") for t in tier_names
    ]
