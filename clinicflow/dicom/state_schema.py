"""The DICOM state tables (:mod:`clinicflow.dicom.state` reads and writes them).

Pods are ephemeral, so nothing about progress lives on local disk. Per
dataset (the output prefix), three tables in schema ``clinicflow_dicom``:

- ``files``: one row per file key (study, series, instance, location):
  ``status`` is ``uploading`` (converted; its objects are being uploaded),
  ``done`` (all objects uploaded; ``csv_row`` holds its CSV row) or
  ``failed`` (``stage``/``kind``/``reason``). ``seen_run`` is the last run
  whose pages contained the key, so the CSV lists exactly the files in the
  current source.
- ``uploads``: the upload log, one row per object name, with an upload
  counter — how tests and operators see that nothing was uploaded twice.
- ``failures``: every failure of every run (file key, stage, kind, reason).
- ``runs``: each finished run's verdict (``ok`` or ``failed`` and why): failed files within the run's
  ``failure_threshold`` leave it ``ok``, which ``clinicflow status`` reports as such.
"""

from __future__ import annotations


def state_tables_ddl(s: str) -> list[str]:
    """The statements creating the state schema ``s`` (already quoted) and its tables, idempotent."""
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE TABLE IF NOT EXISTS {s}.files (
            dataset text NOT NULL,
            study_id text NOT NULL, series_id text NOT NULL, instance_id text NOT NULL, file_location text NOT NULL,
            status text NOT NULL CHECK (status IN ('uploading', 'done', 'failed')),
            objects text[] NOT NULL DEFAULT '{{}}',
            csv_row jsonb,
            bytes bigint,
            jpgs integer,
            stage text, kind text, reason text,
            seen_run text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (dataset, study_id, series_id, instance_id, file_location))""",
        f"""CREATE TABLE IF NOT EXISTS {s}.uploads (
            dataset text NOT NULL,
            object_name text NOT NULL,
            size bigint NOT NULL,
            md5 text NOT NULL,
            upload_count integer NOT NULL DEFAULT 1,
            first_uploaded_at timestamptz NOT NULL DEFAULT now(),
            last_uploaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (dataset, object_name))""",
        f"""CREATE TABLE IF NOT EXISTS {s}.failures (
            id bigserial PRIMARY KEY,
            dataset text NOT NULL,
            run_id text NOT NULL,
            study_id text, series_id text, instance_id text, file_location text,
            stage text NOT NULL, kind text NOT NULL, reason text NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now())""",
        f"CREATE INDEX IF NOT EXISTS failures_dataset_run ON {s}.failures (dataset, run_id)",
        f"""CREATE TABLE IF NOT EXISTS {s}.runs (
            dataset text NOT NULL,
            run_id text NOT NULL,
            status text NOT NULL CHECK (status IN ('ok', 'failed')),
            failed_files integer NOT NULL,
            failure_threshold integer NOT NULL,
            message text,
            finished_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (dataset, run_id))""",
    ]
