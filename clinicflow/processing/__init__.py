"""Data-processing service: data files, processors and the results table.

Plain logic only (no Prefect imports): ``datafiles`` reads and describes
uploaded files, ``processors`` holds the registry of processing types with
their Pydantic parameter models, ``custom`` runs analysts' scripts in a
subprocess, ``store`` is the PostgreSQL results table with its state
transitions, ``runner`` ties them together for one result row. The HTTP API
is ``clinicflow.processing.api``; the Prefect flow is ``flows/process_data.py``.
"""
