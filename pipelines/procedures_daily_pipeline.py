"""PostgreSQL raw -> ClickHouse: completed OpenDental procedures per day, clinic and provider.

Time-partitioned: each run aggregates ``[start, end)`` of ``ProcDate`` (by
default the day before the run) and upserts it into a ReplacingMergeTree, so
re-running or backfilling a day replaces that day's rows.
"""

from datetime import timedelta

from clinicflow.toolkit.compose import etl, retry
from clinicflow.toolkit.spec import PipelineSpec, Timescope

QUERY = """
SELECT "ProcDate" AS day, "ClinicNum" AS clinic, "ProvNum" AS provider,
       count(*) AS procedures, sum("ProcFee")::float8 AS fees
FROM raw.procedurelog
WHERE "ProcDate" >= %(start)s::date AND "ProcDate" < %(end)s::date AND "ProcStatus" = %(status)s
  AND "ProcDate" > DATE '1900-01-01'  -- OpenDental writes 0001-01-01 for "no date"
GROUP BY 1, 2, 3
"""

CREATE = """
CREATE TABLE IF NOT EXISTS procedures_daily (
    day Date32, clinic Int64, provider Int64, procedures UInt64, fees Float64, _version UInt64
) ENGINE = ReplacingMergeTree(_version) ORDER BY (day, clinic, provider)"""

pipeline = PipelineSpec(
    name="procedures-daily",
    description="raw.procedurelog (completed procedures) -> ClickHouse procedures_daily, one day per run.",
    parameters={"status": 2},  # OpenDental ProcStatus 2 = complete
    schedules=[{"cron": "30 4 * * *", "timezone": "America/New_York"}],
    timescope=Timescope(window=timedelta(days=1)),
    steps=[
        retry(
            etl(
                "aggregate_procedures",
                extract={
                    "kind": "sql",
                    "dialect": "postgres",
                    "connection": "analytics-postgres",
                    "query": QUERY,
                    "batch_size": 50_000,
                },
                transform=[{"kind": "types", "mapping": {"procedures": "int", "fees": "float"}}],
                load={
                    "kind": "clickhouse",
                    "table": "procedures_daily",
                    "mode": "upsert",
                    "upsert_strategy": "replacing",
                    "create_sql": CREATE,
                },
            ),
            2,
            on="transient",
        ),
    ],
)
