"""DICOM reports: reports from PostgreSQL → DICOM download → JPG → CSV → bucket.

Plain logic, callable without Prefect: ``reports`` (source query, keyset
pages, grouping, CSV rows), ``download`` (http/gs/s3/file/relative, limits,
retries), ``render`` (DICOM → 8-bit → JPEG), ``storage`` (bucket writers),
``state`` (durable progress and failures in PostgreSQL), ``pipeline`` (one
batch end to end), ``demo``. The Prefect flow is ``flows/dicom_reports.py``.
"""
