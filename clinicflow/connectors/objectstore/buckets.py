"""Bucket writers: one small interface over a local folder, GCS and S3.

``download_file`` reads an object back (the data-processing service keeps its
data files in a bucket through the same writers).

No partial object is ever visible under its final name:

- local folder: the file is written to a hidden temporary name in the same
  directory, fsynced, then ``os.replace``d (atomic on POSIX);
- GCS: ``Blob.upload_from_filename`` is a single multipart request for
  small files and a resumable session for large ones; either way the object
  only appears when the upload is finalised;
- S3: ``put_object``/multipart upload; the object appears only on completion.

Every call is retried on transient errors through the project's one retry
policy (:func:`clinicflow.core.retry.call_with_retry`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from clinicflow.core.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry

CONTENT_TYPES = {".dcm": "application/dicom", ".jpg": "image/jpeg", ".csv": "text/csv; charset=utf-8"}


def content_type_for(name: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class BucketWriter(Protocol):
    """Where the flow's objects go. Names are relative to the bucket's folder."""

    def upload_file(self, path: Path, name: str) -> None: ...

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None: ...

    def list_names(self, prefix: str = "") -> Iterator[str]: ...

    def describe(self) -> str: ...


def _check_name(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", "..", ".") for p in parts):
        raise ValueError(f"invalid object name {name!r}")
    return name


class LocalFolderWriter:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def describe(self) -> str:
        return f"folder {self.root}"

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*PurePosixPath(_check_name(name)).parts)

    def upload_file(self, path: Path, name: str) -> None:
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
        try:
            with open(path, "rb") as src, open(temporary, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def download_file(self, name: str, path: Path) -> None:
        shutil.copyfile(self._path(name), path)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def list_names(self, prefix: str = "") -> Iterator[str]:
        if not self.root.exists():
            return
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                name = path.relative_to(self.root).as_posix()
                if name.startswith(prefix):
                    yield name


class GcsWriter:
    def __init__(self, block: Any, retry: RetryPolicy = DEFAULT_POLICY) -> None:
        from clinicflow.connectors.objectstore.clients import gcs_client

        self.block = block
        self.retry = retry
        self.folder = block.bucket_folder or ""
        self.bucket = gcs_client(block.gcp_credentials).bucket(block.bucket)

    def describe(self) -> str:
        return f"gs://{self.block.bucket}/{self.folder}"

    def _key(self, name: str) -> str:
        return self.folder + _check_name(name)

    def upload_file(self, path: Path, name: str) -> None:
        blob = self.bucket.blob(self._key(name))
        call_with_retry(lambda: blob.upload_from_filename(str(path), content_type=content_type_for(name), timeout=300),
                        what=f"upload {name}", policy=self.retry)

    def download_file(self, name: str, path: Path) -> None:
        blob = self.bucket.blob(self._key(name))
        call_with_retry(lambda: blob.download_to_filename(str(path), timeout=300), what=f"download {name}",
                        policy=self.retry)

    def exists(self, name: str) -> bool:
        blob = self.bucket.blob(self._key(name))
        found: bool = call_with_retry(lambda: blob.exists(), what=f"check {name}",
                                      policy=self.retry)
        return found

    def delete(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            call_with_retry(lambda: self.bucket.blob(self._key(name)).delete(), what=f"delete {name}",
                            policy=self.retry)
        except NotFound:
            pass

    def list_names(self, prefix: str = "") -> Iterator[str]:
        for blob in self.bucket.client.list_blobs(self.bucket, prefix=self.folder + prefix):
            yield blob.name[len(self.folder):]


class S3Writer:
    def __init__(self, block: Any, retry: RetryPolicy = DEFAULT_POLICY) -> None:
        from clinicflow.connectors.objectstore.clients import s3_client

        self.block = block
        self.retry = retry
        folder = block.bucket_folder or ""
        self.folder = folder if not folder or folder.endswith("/") else folder + "/"
        self.client = s3_client(block)

    def describe(self) -> str:
        return f"s3://{self.block.bucket_name}/{self.folder}"

    def _key(self, name: str) -> str:
        return self.folder + _check_name(name)

    def upload_file(self, path: Path, name: str) -> None:
        key = self._key(name)
        call_with_retry(
            lambda: self.client.upload_file(str(path), self.block.bucket_name, key,
                                            ExtraArgs={"ContentType": content_type_for(name)}),
            what=f"upload {name}", policy=self.retry)

    def download_file(self, name: str, path: Path) -> None:
        key = self._key(name)
        call_with_retry(lambda: self.client.download_file(self.block.bucket_name, key, str(path)),
                        what=f"download {name}", policy=self.retry)

    def exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.block.bucket_name, Key=self._key(name))
                return True
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return False
                raise

        return call_with_retry(head, what=f"check {name}", policy=self.retry)

    def delete(self, name: str) -> None:
        call_with_retry(lambda: self.client.delete_object(Bucket=self.block.bucket_name, Key=self._key(name)),
                        what=f"delete {name}", policy=self.retry)

    def list_names(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.block.bucket_name, Prefix=self.folder + prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(self.folder):]


def writer_for(block: Any, retry: RetryPolicy = DEFAULT_POLICY) -> BucketWriter:
    """The writer for a bucket block (LocalFolderBucket, GcsBucket or S3Bucket)."""
    kind = type(block).__name__
    if kind == "LocalFolderBucket":
        return LocalFolderWriter(block.path)
    if kind == "GcsBucket":
        return GcsWriter(block, retry)
    if kind == "S3Bucket":
        return S3Writer(block, retry)
    raise TypeError(f"unsupported bucket block type {kind}")
