"""Prefect tasks of the ``analyze_schema`` flow: thin wrappers over ``clinicflow.opendental.tables``.

Reading the source is retried on transient database errors (the project's retry policy); writing
tables.yml is not (a failed write is a real error, reported as such).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.databases import MySQLServer
from clinicflow.core.retry import TASK_RETRY
from clinicflow.opendental.tables import analysis_rules, config_drift, schema_analysis, tables_yml
from clinicflow.opendental.tables.config import TablesConfig


@task(name="analyze-source", cache_policy=NO_CACHE, **TASK_RETRY)
def analyze_source_task(
    server: MySQLServer, rules: analysis_rules.AnalysisRules, exclude: list[str] | None = None
) -> schema_analysis.SchemaAnalysis:
    return schema_analysis.analyze_source(server, rules, exclude=exclude or ())


@task(name="write-tables-yml", cache_policy=NO_CACHE)
def write_tables_task(analysis: schema_analysis.SchemaAnalysis, path: str) -> tables_yml.WriteResult:
    return tables_yml.write_tables_yml(analysis, path)


@task(name="check-drift", cache_policy=NO_CACHE, **TASK_RETRY)
def check_drift_task(
    server: MySQLServer, config: TablesConfig, rules: analysis_rules.AnalysisRules, exclude: list[str] | None = None
) -> config_drift.DriftReport:
    return config_drift.check_drift(server, config, rules, exclude=exclude or ())
