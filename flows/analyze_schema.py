"""Flow ``analyze_schema``: write tables.yml from the live source, or check it for drift.

Wiring only (logic in :mod:`clinicflow.opendental.tables`, tasks in
:mod:`tasks.analysis`): one task reads and analyses the source (retried on
transient database errors), one writes the file, artifacts summarise the
result. The flow ends Failed when the check finds drift or a table could not
be analysed.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Failed

from blocks.databases import MySQLServer
from blocks.resolve import SOURCE_BLOCK, resolve_block
from clinicflow.opendental.tables import analysis_rules, tables_yml
from clinicflow.opendental.tables.config import load_tables_config
from tasks.analysis import analyze_source_task, check_drift_task, write_tables_task


@flow(name="analyze-schema")
def analyze_schema(
    output: str | None = None,
    check: bool = False,
    database: str | None = None,
    critical_tables: list[str] | None = None,
    publish_yaml: bool = False,
    exclude: list[str] | None = None,
) -> Any:
    """Analyse the OpenDental source (block ``opendental-source``) into tables.yml at ``output``.

    ``check=True`` compares instead of writing and fails on drift;
    ``publish_yaml=True`` also attaches the written file as a markdown
    artifact (useful where the job's file system is thrown away).
    ``exclude`` names source tables left out of tables.yml; tables whose
    names tables.yml cannot hold are left out with a warning.
    """
    server = resolve_block(SOURCE_BLOCK, MySQLServer)
    if database:
        server = server.model_copy(update={"database": database})
    rules = analysis_rules.rules_with(critical_tables=tuple(critical_tables) if critical_tables else None)
    path = tables_yml.tables_file_path(output)

    if check:
        report = check_drift_task(server, load_tables_config(path), rules, exclude)
        create_table_artifact(
            report.to_rows() or [{"result": report.summary()}], key="tables-yml-drift", description=report.summary()
        )
        if report.has_drift:
            return Failed(message=report.summary())
        return {"drift": False, "tables_checked": report.tables_checked}

    analysis = analyze_source_task(server, rules, exclude)
    result = write_tables_task(analysis, str(path))
    state = "written" if result.changed else "unchanged"
    create_table_artifact(
        analysis.summary_rows(),
        key="schema-analysis",
        description=f"{result.tables} tables from {analysis.schema.address}: {path} {state}",
    )
    if publish_yaml:
        create_markdown_artifact(
            f"```yaml\n{path.read_text(encoding='utf-8')}```", key="tables-yml", description=f"{path.name} as generated"
        )
    if result.errors:
        return Failed(
            message=f"{len(result.errors)} table(s) could not be analysed (copied fully): "
            + "; ".join(result.errors.values())
        )
    return {
        "output": str(path),
        "changed": result.changed,
        "tables": result.tables,
        "fingerprint": analysis.schema.fingerprint(),
    }
