"""DICOM reports: reports from PostgreSQL → DICOM download → JPG → CSV → bucket.

Plain logic, callable without Prefect: ``reports`` (source query, keyset
pages, grouping), ``download`` (http/gs/s3/file/relative, limits, retries),
``render`` (DICOM → 8-bit → JPEG), ``storage`` (bucket writers), ``state``
(durable progress, upload log and failures in PostgreSQL), ``pipeline`` (one
batch end to end, object names, CSV rows), ``outputs`` (the CSV objects and
the run summary), ``progress`` (progress artifact and bar), ``demo``.
The Prefect flow is ``flows/dicom_reports.py``; docs in ``docs/dicom.md``.
"""
