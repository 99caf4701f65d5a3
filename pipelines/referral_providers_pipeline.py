"""HTTP API -> PostgreSQL: the referral provider directory into ``toolkit.referral_providers`` (upsert on NPI).

Template for a new pipeline: name it ``*_pipeline.py``, build ``pipeline``
from tools and composition helpers, run ``clinicflow pipelines sync``.
"""

from clinicflow.toolkit.compose import etl
from clinicflow.toolkit.spec import PipelineSpec

CREATE = """
CREATE SCHEMA IF NOT EXISTS toolkit;
CREATE TABLE IF NOT EXISTS toolkit.referral_providers (
    npi bigint PRIMARY KEY,
    name text NOT NULL,
    specialty text,
    city text,
    accepting_new boolean,
    updated_at timestamptz
)"""

pipeline = PipelineSpec(
    name="referral-providers",
    description="Referral provider directory (paginated JSON API) -> PostgreSQL toolkit.referral_providers.",
    parameters={"api_url": "http://127.0.0.1:8765"},
    schedules=[{"cron": "0 4 * * *", "timezone": "America/New_York"}],
    steps=[
        etl(
            "fetch_referral_providers",
            extract={
                "kind": "http",
                "url": "{api_url}/providers",
                "records_path": "results",
                "pagination": {"style": "page", "page_size": 20},
                "rate_limit_per_second": 5,
                "max_retries": 4,
            },
            transform=[
                {"kind": "types", "mapping": {"npi": "int", "accepting_new": "bool", "updated_at": "datetime"}},
                {
                    "kind": "columns",
                    "rename": {"specialty_name": "specialty"},
                    "select": ["npi", "name", "specialty", "city", "accepting_new", "updated_at"],
                },
            ],
            load={
                "kind": "postgres",
                "connection": "analytics-postgres",
                "schema": "toolkit",
                "table": "referral_providers",
                "mode": "upsert",
                "key_columns": ["npi"],
                "create_sql": CREATE,
            },
        ),
    ],
)
