"""Data files in the bucket: store an upload, register an object already there, fetch a local copy.

The bytes live in the processing bucket (a local folder, GCS or S3 through
:mod:`clinicflow.connectors.objectstore.stores`); the metadata row in
``processing.data_files``. Objects go under ``data-files/<uuid>/<name>``.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from clinicflow.connectors.objectstore.stores import ObjectStore
from clinicflow.core.dbapi import PgConnection
from clinicflow.processing import store
from clinicflow.processing.base import InvalidRequest
from clinicflow.processing.datafiles import FileMetadata, describe_file
from clinicflow.processing.workbooks import is_workbook, workbook_to_csv

OBJECT_PREFIX = "data-files/"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str) -> str:
    """The upload's base name with anything but letters, digits, '.', '_', '-' replaced (never a path)."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).strip("._") or "data"
    return base[:200]


def bucket_uri_prefix(writer: ObjectStore) -> str:
    """How object URIs of this bucket start: file:///abs/folder/, gs://bucket/folder/, s3://bucket/folder/."""
    return writer.uri("")


def object_uri(writer: ObjectStore, object_name: str) -> str:
    return bucket_uri_prefix(writer) + object_name


def as_table_file(local_path: Path, file_name: str) -> tuple[Path, str, str]:
    """The file the processors read, its name, and a note for the uploader: an Excel workbook's table sheet as
    ``<stem>-<sheet>.csv`` beside it (DataFileError naming the cell if it is not a table), any other file as it is."""
    if not is_workbook(local_path):
        return local_path, file_name, ""
    converted = local_path.with_name(local_path.name + ".csv")
    try:
        sheet, titles = workbook_to_csv(local_path, converted, file_name)
    except BaseException:
        converted.unlink(missing_ok=True)  # a sheet that is not a table leaves no half-written CSV behind
        raise
    note = f"sheet {sheet!r} read, of {', '.join(map(repr, titles))}" if len(titles) > 1 else ""
    return converted, safe_file_name(f"{Path(file_name).stem}-{sheet}.csv"), note


def store_upload(conn: PgConnection, writer: Any, local_path: Path, name: str) -> dict[str, Any]:
    """Describe an uploaded file (DataFileError if unreadable), put it in the bucket, insert its row."""
    table_path, file_name, note = as_table_file(local_path, safe_file_name(name))
    try:
        meta = describe_file(table_path, file_name)
        object_name = f"{OBJECT_PREFIX}{uuid.uuid4().hex}/{file_name}"
        writer.write(object_name, table_path)
    finally:
        if table_path != local_path:
            table_path.unlink(missing_ok=True)
    return _insert(conn, file_name, meta, object_name, object_uri(writer, object_name), note)


def register_uri(conn: PgConnection, writer: Any, uri: str, workdir: Path) -> dict[str, Any]:
    """Register an object already in the processing bucket by its URI: read once for its metadata."""
    prefix = bucket_uri_prefix(writer)
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise InvalidRequest("uri", f"must name an object in the processing bucket ({prefix}...)")
    object_name = uri[len(prefix) :]
    try:
        if not writer.exists(object_name):
            raise InvalidRequest("uri", "no such object in the processing bucket")
    except ValueError as exc:  # an object name with '..' or empty parts
        raise InvalidRequest("uri", str(exc)) from None
    file_name = safe_file_name(object_name.rsplit("/", 1)[-1])
    local = workdir / f"{uuid.uuid4().hex}-{file_name}"
    table_path = local
    try:
        writer.download(object_name, local)
        table_path, table_name, note = as_table_file(local, file_name)
        meta = describe_file(table_path, table_name)
        if table_path != local:  # a workbook: its sheet's CSV is stored beside it and is what jobs read
            file_name, object_name = table_name, f"{OBJECT_PREFIX}{uuid.uuid4().hex}/{table_name}"
            writer.write(object_name, table_path)
            uri = object_uri(writer, object_name)
    finally:
        local.unlink(missing_ok=True)
        table_path.unlink(missing_ok=True)
    return _insert(conn, file_name, meta, object_name, uri, note)


def _insert(
    conn: PgConnection, name: str, meta: FileMetadata, object_name: str, storage_uri: str, note: str = ""
) -> dict[str, Any]:
    row = store.insert_data_file(
        conn,
        name=name,
        size_bytes=meta.size_bytes,
        sha256=meta.sha256,
        fmt=meta.format,
        columns=meta.columns,
        row_count=meta.row_count,
        object_name=object_name,
        storage_uri=storage_uri,
    )
    notes = [note] if note else []
    if meta.footer_bytes:  # said once, at upload: the rows counted and read are the table's only
        notes.append(f"{meta.footer_bytes} bytes of text below the table (a device's footer) left out")
    if notes:
        row["note"] = "; ".join(notes)
    return row
