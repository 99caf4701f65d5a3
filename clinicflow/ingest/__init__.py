"""File ingestion: object-store wildcards → staged documents → Medical rows, with a dead-letter queue.

Plain logic, no Prefect: the flow (flows/ingest_files.py), its tasks
(tasks/ingest.py) and the CLI (clinicflow/cli/ingest.py) call these
functions. See docs/ingest.md.
"""
