"""Object stores the ingestion reads from: a local folder, S3 (any endpoint), GCS.

Each store lists the objects under a literal prefix (streamed, page by page,
in name order) with a version tag, and reads one object with a size limit.
The S3 and GCS clients are passed in (built by ``blocks.buckets.s3_client``
/ ``gcs_client`` in the task layer), so this module needs no Prefect. Reads
are retried on transient errors by the project's one retry policy.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from clinicflow.connectors.objectstore.patterns import Location, glob_match
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.retry import call_with_retry


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object. ``version`` is the S3 ETag, the GCS generation, or mtime+size locally."""

    uri: str
    key: str
    size: int
    version: str
    problem: str | None = None  # set at listing: "not-found" (dangling link, vanished), "outside-root"


# Listing problems: the object becomes a read dead letter and the run goes on.
PROBLEMS = {"not-found": "gone or a dangling link when listed",
            "outside-root": "a symbolic link out of the pattern's root (not followed)"}


class OutsideRoot(ClinicflowError, PermissionError):
    """A local path that resolves outside the store's root (a symbolic link): never read."""


class TooLarge(ClinicflowError):
    """The object is larger than the configured limit (never read)."""


class ObjectStore(Protocol):
    location_uri: str

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def read(self, key: str, max_bytes: int) -> bytes: ...


class LocalStore:
    """Files under ``root``; keys are ``/``-separated paths relative to it. Hidden files are ignored."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.location_uri = self.root.as_uri() if self.root.is_absolute() else str(self.root)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the deepest folder the prefix names; one folder's entries in memory at a time.
        folder, _, _ = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        if not start.is_dir():
            return
        yield from self._walk(start, prefix)

    def _walk(self, folder: Path, prefix: str) -> Iterator[ObjectInfo]:
        with os.scandir(folder) as entries:
            names = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink())
                           for e in entries if not e.name.startswith("."))
        for name, is_dir, is_link in names:
            path = folder / name
            key = path.relative_to(self.root).as_posix()
            if is_dir:
                if key.startswith(prefix) or prefix.startswith(key + "/"):
                    yield from self._walk(path, prefix)
                continue
            if not key.startswith(prefix):
                continue
            if is_link and not self._inside(path):
                yield ObjectInfo(path.as_uri(), key, 0, "", problem="outside-root")
                continue
            try:
                stat = path.stat()
            except OSError:  # a dangling link, or removed since the folder was read
                yield ObjectInfo(path.as_uri(), key, 0, "", problem="not-found")
                continue
            if not os.path.isfile(path):
                continue  # a link to a folder inside the root: its files are listed where they are
            yield ObjectInfo(path.as_uri(), key, stat.st_size, f"{stat.st_mtime_ns}-{stat.st_size}")

    def _inside(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.root.resolve())
            return True
        except ValueError:
            return False

    def read(self, key: str, max_bytes: int) -> bytes:
        path = self.root / key
        if not self._inside(path):
            raise OutsideRoot(key)
        if path.stat().st_size > max_bytes:
            raise TooLarge(key)
        return path.read_bytes()


class S3Store:
    """An S3 bucket through a boto3 client (its endpoint may be MinIO, moto, Ceph…)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self.location_uri = f"s3://{bucket}"

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith("/"):
                    continue  # folder marker objects
                yield ObjectInfo(f"s3://{self.bucket}/{key}", key, int(item["Size"]), str(item["ETag"]).strip('"'))

    def read(self, key: str, max_bytes: int) -> bytes:
        def get() -> bytes:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.NoSuchKey:
                raise FileNotFoundError(f"s3://{self.bucket}/{key}") from None
            if int(response.get("ContentLength", 0)) > max_bytes:
                response["Body"].close()
                raise TooLarge(key)
            data: bytes = response["Body"].read()
            return data

        return call_with_retry(get, what=f"read s3://{self.bucket}/{key}")


class GcsStore:
    """A GCS bucket through a ``google.cloud.storage`` client."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = client.bucket(bucket)
        self.location_uri = f"gs://{bucket}"

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for blob in self.client.list_blobs(self.bucket, prefix=prefix or None):
            if blob.name.endswith("/"):
                continue
            yield ObjectInfo(f"gs://{self.bucket.name}/{blob.name}", blob.name, int(blob.size or 0),
                             str(blob.generation))

    def read(self, key: str, max_bytes: int) -> bytes:
        def get() -> bytes:
            from google.api_core.exceptions import NotFound

            blob = self.bucket.blob(key)
            try:
                blob.reload()
            except NotFound:
                raise FileNotFoundError(f"gs://{self.bucket.name}/{key}") from None
            if (blob.size or 0) > max_bytes:
                raise TooLarge(key)
            content: bytes = blob.download_as_bytes()
            return content

        return call_with_retry(get, what=f"read gs://{self.bucket.name}/{key}")


def matching_objects(store: ObjectStore, location: Location) -> Iterator[ObjectInfo]:
    """Objects under the pattern's literal prefix whose key matches its glob (streamed)."""
    for info in store.list(location.prefix):
        if glob_match(location.glob, info.key):
            yield info
