"""DICOM reports: reports from PostgreSQL → DICOM download → JPG → CSV → bucket.

Plain logic, callable without Prefect: ``options`` (validated run options), ``reports`` (source query,
keyset pages, grouping), ``download`` (http/gs/s3/file/relative, limits, retries), ``dataset`` (read and
decode a frame, bounded), ``display`` (DICOM's grayscale pipeline and colour to 8-bit), ``render`` (JPEG
files), ``state`` (durable progress, upload log and failures in PostgreSQL), ``pipeline`` (one batch end to
end, object names, CSV rows), ``outputs`` (the CSV objects and the run summary). The object stores live in
``clinicflow/connectors/objectstore``, the progress artifact in ``flows/progress.py``, demo files in the
dev-only ``clinicflow_dev``. The Prefect flow is ``flows/dicom_reports.py``; docs in ``docs/dicom.md``.
"""
