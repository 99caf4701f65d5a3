"""The one object-store connector: a local folder, GCS and S3 behind one :class:`ObjectStore` protocol.

Every place that lists, reads, writes or deletes objects goes through these stores: DICOM outputs and
downloads, the ingestion's inputs, the processing bucket, the toolkit's file loader. Keys are
``/``-separated names relative to the store's folder (``folder`` of a bucket block; the local root).

``list`` streams the objects under a literal prefix in name order with a version tag (S3 ETag, GCS
generation, local mtime+size); ``read`` refuses more than ``max_bytes``; ``write`` never shows a partial
object under its final name (a hidden temporary file fsynced and ``os.replace``d locally; GCS and S3 objects
appear when their upload is finalised); deleting a missing object is fine.

Cloud calls are retried on transient errors through the store's :class:`~clinicflow.core.retry.RetryPolicy`.
The GCS and S3 clients, and ``store_for_block`` (the store of a bucket block, without importing Prefect),
come from :mod:`clinicflow.connectors.objectstore.clients`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from clinicflow.connectors.objectstore.patterns import Location, glob_match
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry

CONTENT_TYPES = {".dcm": "application/dicom", ".jpg": "image/jpeg", ".csv": "text/csv; charset=utf-8"}
# Seconds one cloud upload or download may take (per attempt).
TRANSFER_TIMEOUT_SECONDS = 300.0


def content_type_for(name: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object. ``version`` is the S3 ETag, the GCS generation, or mtime+size locally."""

    uri: str
    key: str
    size: int
    version: str
    problem: str | None = None  # set at listing: "not-found" (dangling link, vanished), "outside-root"


# Listing problems: the object becomes a read dead letter and the run goes on.
PROBLEMS = {
    "not-found": "gone or a dangling link when listed",
    "outside-root": "a symbolic link out of the pattern's root (not followed)",
}


class OutsideRoot(ClinicflowError, PermissionError):
    """A local path that resolves outside the store's root (a symbolic link): never read."""


class TooLarge(ClinicflowError):
    """The object is larger than the configured limit (never read)."""

    def __init__(self, key: str, size: int | None = None) -> None:
        super().__init__(key)
        self.size = size


class ObjectStore(Protocol):
    """A local folder, a GCS bucket or an S3 bucket (optionally below a folder)."""

    def describe(self) -> str: ...

    def uri(self, key: str) -> str: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def read(self, key: str, max_bytes: int) -> bytes: ...

    def download(self, key: str, dest: Path, max_bytes: int | None = None) -> None: ...

    def write(self, key: str, source: Path) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    """``key`` when it is a relative ``/``-separated name without empty, ``.`` or ``..`` parts (ValueError)."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", "..", ".") for p in parts):
        raise ValueError(f"invalid object name {key!r}")
    return key


def _folder(folder: str | None) -> str:
    folder = folder or ""
    return folder if not folder or folder.endswith("/") else folder + "/"


class LocalStore:
    """Files under ``root``; keys are ``/``-separated paths relative to it. Hidden files are ignored."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        # An absolute root is kept as given (its object URIs are the ingestion's identities); a relative one
        # (a bucket block's default ./out/bucket) is made absolute.
        path = Path(root)
        self.root = path if path.is_absolute() else Path(os.path.abspath(path))

    def describe(self) -> str:
        return f"folder {self.root}"

    def uri(self, key: str) -> str:
        return self.root.as_uri().rstrip("/") + "/" + key

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*PurePosixPath(check_key(key)).parts)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the deepest folder the prefix names; one folder's entries in memory at a time.
        folder, _, _ = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        if not start.is_dir():
            return
        yield from self._walk(start, prefix)

    def _walk(self, folder: Path, prefix: str) -> Iterator[ObjectInfo]:
        with os.scandir(folder) as entries:
            names = sorted(
                (e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in entries if not e.name.startswith(".")
            )
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
        size = path.stat().st_size
        if size > max_bytes:
            raise TooLarge(key, size)
        return path.read_bytes()

    def download(self, key: str, dest: Path, max_bytes: int | None = None) -> None:
        path = self._path(key)
        if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
            raise TooLarge(key, size)
        shutil.copyfile(path, dest)

    def write(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
        try:
            with open(source, "rb") as src, open(temporary, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class _BucketStore:
    """What the S3 and GCS stores share: a bucket name, a folder inside it, the retry policy, the URIs."""

    scheme = ""

    def __init__(self, bucket_name: str, folder: str | None, retry: RetryPolicy) -> None:
        self.bucket_name = bucket_name
        self.folder = _folder(folder)
        self.retry = retry

    def describe(self) -> str:
        return self.uri("")

    def uri(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket_name}/{self.folder}{key}"


class S3Store(_BucketStore):
    """An S3 bucket (below ``folder``) through a boto3 client (its endpoint may be MinIO, moto, Ceph…)."""

    scheme = "s3"

    def __init__(
        self, client: Any, bucket: str, folder: str | None = "", *, retry: RetryPolicy = DEFAULT_POLICY
    ) -> None:
        super().__init__(bucket, folder, retry)
        self.client = client
        self.bucket = bucket

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.folder + prefix):
            for item in page.get("Contents", []):
                full = item["Key"]
                if full.endswith("/"):
                    continue  # folder marker objects
                key = full[len(self.folder) :]
                yield ObjectInfo(self.uri(key), key, int(item["Size"]), str(item["ETag"]).strip('"'))

    def read(self, key: str, max_bytes: int) -> bytes:
        full = self.folder + key

        def get() -> bytes:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
            except self.client.exceptions.NoSuchKey:
                raise FileNotFoundError(self.uri(key)) from None
            size = int(response.get("ContentLength", 0))
            if size > max_bytes:
                response["Body"].close()
                raise TooLarge(key, size)
            data: bytes = response["Body"].read()
            return data

        return call_with_retry(get, what=f"read {self.uri(key)}", policy=self.retry)

    def download(self, key: str, dest: Path, max_bytes: int | None = None) -> None:
        full = self.folder + key

        def get() -> None:
            if max_bytes is not None:
                size = int(self.client.head_object(Bucket=self.bucket, Key=full).get("ContentLength", 0))
                if size > max_bytes:
                    raise TooLarge(key, size)
            self.client.download_file(self.bucket, full, str(dest))

        call_with_retry(get, what=f"download {key}", policy=self.retry)

    def write(self, key: str, source: Path) -> None:
        full = self.folder + check_key(key)
        call_with_retry(
            lambda: self.client.upload_file(
                str(source), self.bucket, full, ExtraArgs={"ContentType": content_type_for(key)}
            ),
            what=f"upload {key}",
            policy=self.retry,
        )

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        full = self.folder + check_key(key)

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=full)
                return True
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return False
                raise

        return call_with_retry(head, what=f"check {key}", policy=self.retry)

    def delete(self, key: str) -> None:
        full = self.folder + check_key(key)
        call_with_retry(
            lambda: self.client.delete_object(Bucket=self.bucket, Key=full), what=f"delete {key}", policy=self.retry
        )


class GcsStore(_BucketStore):
    """A GCS bucket (below ``folder``) through a ``google.cloud.storage`` client."""

    scheme = "gs"

    def __init__(
        self,
        client: Any,
        bucket: str,
        folder: str | None = "",
        *,
        retry: RetryPolicy = DEFAULT_POLICY,
        timeout_seconds: float = TRANSFER_TIMEOUT_SECONDS,
        metadata_timeout_seconds: float = 60.0,
    ) -> None:
        super().__init__(bucket, folder, retry)
        self.client = client
        self.bucket = client.bucket(bucket)
        self.timeout_seconds = timeout_seconds
        self.metadata_timeout_seconds = metadata_timeout_seconds

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for blob in self.client.list_blobs(self.bucket, prefix=(self.folder + prefix) or None):
            if blob.name.endswith("/"):
                continue
            key = blob.name[len(self.folder) :]
            yield ObjectInfo(self.uri(key), key, int(blob.size or 0), str(blob.generation))

    def read(self, key: str, max_bytes: int) -> bytes:
        full = self.folder + key

        def get() -> bytes:
            from google.api_core.exceptions import NotFound

            blob = self.bucket.blob(full)
            try:
                blob.reload()
            except NotFound:
                raise FileNotFoundError(self.uri(key)) from None
            if (blob.size or 0) > max_bytes:
                raise TooLarge(key, blob.size)
            content: bytes = blob.download_as_bytes()
            return content

        return call_with_retry(get, what=f"read {self.uri(key)}", policy=self.retry)

    def download(self, key: str, dest: Path, max_bytes: int | None = None) -> None:
        blob = self.bucket.blob(self.folder + key)

        def get() -> None:
            if max_bytes is not None:
                blob.reload(timeout=self.metadata_timeout_seconds)
                if blob.size is not None and blob.size > max_bytes:
                    raise TooLarge(key, blob.size)
            blob.download_to_filename(str(dest), timeout=self.timeout_seconds)

        call_with_retry(get, what=f"download {key}", policy=self.retry)

    def write(self, key: str, source: Path) -> None:
        blob = self.bucket.blob(self.folder + check_key(key))
        call_with_retry(
            lambda: blob.upload_from_filename(
                str(source), content_type=content_type_for(key), timeout=self.timeout_seconds
            ),
            what=f"upload {key}",
            policy=self.retry,
        )

    def exists(self, key: str) -> bool:
        blob = self.bucket.blob(self.folder + check_key(key))
        found: bool = call_with_retry(lambda: blob.exists(), what=f"check {key}", policy=self.retry)
        return found

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        blob = self.bucket.blob(self.folder + check_key(key))
        with contextlib.suppress(NotFound):
            call_with_retry(lambda: blob.delete(), what=f"delete {key}", policy=self.retry)


def matching_objects(store: ObjectStore, location: Location) -> Iterator[ObjectInfo]:
    """Objects under the pattern's literal prefix whose key matches its glob (streamed)."""
    for info in store.list(location.prefix):
        if glob_match(location.glob, info.key):
            yield info
