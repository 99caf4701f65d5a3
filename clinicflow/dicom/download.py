"""Fetch one DICOM file from where the reports table says it is.

Locations: ``http(s)://``, ``gs://bucket/key``, ``s3://bucket/key``,
``file:///abs/path``, absolute paths, and paths relative to a configured
base (a folder, or an ``http(s)``/``gs``/``s3`` URL prefix). Relative paths
may not climb out of their base (``..``).

Downloads are streamed to disk (memory: one chunk), bounded in size and
time, and retried with exponential backoff and jitter on transient failures
only — timeouts, connection errors, HTTP 5xx and 429 — through the project's
one retry policy. 404, 403 and other client errors fail at once.

Time: each HTTP attempt has an absolute deadline, enforced on every socket
operation and interruptible by a stop request (:mod:`clinicflow.dicom.deadline`).

Where: local files (absolute paths, ``file://``) only inside the configured
allowed roots (or the base folder); HTTP redirects to private, loopback or
link-local addresses are refused unless allowed.
Failures raise :class:`DownloadError` with a short ``kind`` for counting and
a ``reason`` for people; neither ever contains credentials (URLs are shown
without their user info and query string).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urljoin, urlsplit

from clinicflow.connectors.http import redact
from clinicflow.connectors.objectstore.stores import GcsStore, ObjectStore, S3Store, TooLarge
from clinicflow.core import cancel
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.retry import DEFAULT_POLICY, RetryPolicy, TransientError, call_with_retry, is_transient
from clinicflow.dicom.deadline import attempt_deadline, use_deadline_backend

CHUNK_BYTES = 1 << 20
# DICOMweb servers (WADO-RS) answer an instance's URL as multipart/related; a plain file server ignores this.
ACCEPT = 'multipart/related; type="application/dicom", application/dicom;q=0.9, */*;q=0.8'
MAX_REDIRECTS = 5
# Bucket reads inside one fetch attempt: Downloader.fetch retries the whole attempt with the run's policy.
_ONE_ATTEMPT = RetryPolicy(retries=0)


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int = 2 * 1024**3
    timeout_seconds: float = 300.0  # whole transfer, per attempt
    connect_timeout_seconds: float = 10.0
    retry: RetryPolicy = DEFAULT_POLICY
    # Folders that absolute and file:// locations must lie in (after resolving symlinks); none: refused.
    allowed_roots: tuple[str, ...] = ()
    # Follow HTTP redirects to private/loopback/link-local addresses (refused by default: SSRF).
    allow_private_redirects: bool = False


class DownloadError(ClinicflowError):
    """A file that could not be fetched. ``kind``: e.g. ``http-404``, ``timeout``, ``too-large``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def multipart_boundary(content_type: str) -> str | None:
    """The boundary of a ``multipart/related`` response (a DICOMweb retrieve); None for anything else."""
    from email.message import Message

    header = Message()
    header["content-type"] = content_type
    if header.get_content_type() != "multipart/related":
        return None
    boundary = header.get_param("boundary")
    return boundary if isinstance(boundary, str) and boundary else None


def single_part_body(path: Path, boundary: str, where: str) -> None:
    """Rewrite ``path``, a multipart body of one part (a DICOMweb instance), as that part's bytes.

    Streamed: the part's start is in the first block, its end is found by scanning blocks for the
    next delimiter, and the bytes between are copied (memory: one block). A body of several parts
    (a series or a study) fails: a report points at one instance.
    """
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    with open(path, "rb") as body:
        head = b"\r\n" + body.read(CHUNK_BYTES)  # the first delimiter may open the body, without its CRLF
        first = head.find(delimiter)
        headers_end = head.find(b"\r\n\r\n", first + len(delimiter)) if first >= 0 else -1
        if headers_end < 0:
            raise DownloadError("bad-multipart", f"{where}: a multipart/related answer without a first part")
        start = headers_end + 4 - 2  # offsets in ``head`` are 2 bytes past the file's
        end = _find(body, delimiter, start)
        if end < 0:
            raise DownloadError("bad-multipart", f"{where}: a multipart/related answer whose part never ends")
        body.seek(end + len(delimiter))
        if body.read(2) != b"--":
            raise DownloadError(
                "several-parts", f"{where}: the answer holds several DICOM instances (a series?): give one instance"
            )
        part = path.with_name(path.name + ".part")
        body.seek(start)
        with open(part, "wb") as out:
            remaining = end - start
            while remaining > 0:
                block = body.read(min(CHUNK_BYTES, remaining))
                if not block:
                    break
                out.write(block)
                remaining -= len(block)
    os.replace(part, path)


def _find(handle: BinaryIO, needle: bytes, offset: int) -> int:
    """The file offset of ``needle`` at or after ``offset``, read in blocks; -1 when absent."""
    handle.seek(offset)
    carry, position = b"", offset
    while block := handle.read(CHUNK_BYTES):
        window = carry + block
        found = window.find(needle)
        if found >= 0:
            return position - len(carry) + found
        carry = window[-(len(needle) - 1) :] if len(needle) > 1 else b""
        position += len(block)
    return -1


def stored_location(location: str) -> str:
    """``location`` as the state tables and CSVs keep it: redacted, and still unique.

    A URL with user info, a query string or a fragment becomes its redacted form
    plus a hash of the whole location (two signed URLs of one object stay two keys).
    """
    safe = redact(location)
    if safe == location:
        return location
    import hashlib

    return f"{safe}#sha256={hashlib.sha256(location.encode('utf-8')).hexdigest()[:16]}"


def resolve_location(location: str, base: str | None = None) -> str:
    """An absolute URL or filesystem path for ``location`` (relative ones joined to ``base``)."""
    location = (location or "").strip()
    if not location:
        raise DownloadError("bad-location", "empty file location")
    scheme = urlsplit(location).scheme.lower()
    if scheme in ("http", "https", "gs", "s3", "file"):
        return location
    if scheme and len(scheme) > 1:
        raise DownloadError("bad-location", f"unsupported location scheme {scheme!r}")
    if os.path.isabs(location):
        return location
    if not base:
        raise DownloadError("bad-location", f"relative location {location!r} but no base location is configured")
    relative = PurePosixPath(location.replace("\\", "/"))
    if ".." in relative.parts:
        raise DownloadError("bad-location", f"relative location {location!r} climbs out of the base")
    base_scheme = urlsplit(base).scheme.lower()
    if base_scheme in ("http", "https", "gs", "s3", "file"):
        prefix = base if base.endswith("/") else base + "/"
        if base_scheme in ("http", "https"):
            return urljoin(prefix, quote(relative.as_posix()))
        return prefix + relative.as_posix()
    return str(Path(base) / relative)


def _is_private_host(host: str) -> bool:
    """True when ``host`` is, or resolves to, a private, loopback, link-local or otherwise non-public address."""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False  # unresolvable: the request itself fails
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_reserved
            or ip.is_multicast
            or ip.is_unspecified
        ):
            return True
    return False


def _within(path: str, root: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(path), real_root]) == real_root


class Downloader:
    """Fetches files for one batch; holds the HTTP connection pool and cloud clients.

    Use as a context manager (closes the HTTP client).
    """

    def __init__(
        self,
        limits: DownloadLimits = DownloadLimits(),
        base: str | None = None,
        sleep: Callable[[float], None] = cancel.sleep,
    ) -> None:
        import httpx

        self.limits = limits
        self.base = base
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=httpx.Timeout(limits.timeout_seconds, connect=limits.connect_timeout_seconds),
            follow_redirects=False,  # followed in _http_get, each target checked
            headers={"Accept": ACCEPT},
        )
        use_deadline_backend(self._http)
        self._gcs: Any = None
        self._s3: Any = None
        self._stores: dict[tuple[str, str], ObjectStore] = {}

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def fetch(self, location: str, dest: Path, *, what: str) -> Path:
        """Fetch ``location``; returns the local path holding it (``dest``, or the file itself if local).

        ``what`` names the file key for log lines (never the URL's secrets).
        """
        resolved = resolve_location(location, self.base)
        scheme = urlsplit(resolved).scheme.lower()
        if scheme in ("", "file"):
            return self._local(resolved)
        cancel.check()
        fetchers = {"http": self._http_get, "https": self._http_get, "gs": self._object_get, "s3": self._object_get}
        fetch_once = fetchers[scheme]
        try:
            call_with_retry(lambda: fetch_once(resolved, dest), what=what, policy=self.limits.retry, sleep=self._sleep)
        except (DownloadError, cancel.RunCancelled):
            dest.unlink(missing_ok=True)
            raise
        except Exception as exc:  # noqa: BLE001 - every other failure is classified into a DownloadError
            dest.unlink(missing_ok=True)
            raise self._classify(exc, resolved) from None
        return dest

    # -- local files: no copy, the file is used where it is.
    def _local(self, resolved: str) -> Path:
        path = Path(unquote(urlsplit(resolved).path)) if resolved.startswith("file:") else Path(resolved)
        # Checked before anything else, so a location outside the roots learns nothing about the file.
        roots = list(self.limits.allowed_roots)
        if self.base and not urlsplit(self.base).scheme:
            roots.append(self.base)
        if not any(_within(str(path), root) for root in roots):
            raise DownloadError(
                "bad-location",
                f"{path} is outside the allowed roots for local files"
                + ("" if roots else " (none configured: set allowed_roots)"),
            )
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DownloadError("not-found", f"file not found: {path}") from None
        except OSError as exc:
            raise DownloadError("unreadable", f"cannot read {path}: {exc.strerror}") from None
        if not path.is_file():
            raise DownloadError("not-found", f"not a regular file: {path}")
        if size > self.limits.max_bytes:
            raise DownloadError("too-large", f"{size} bytes exceeds the {self.limits.max_bytes}-byte limit")
        return path

    # -- one attempt each; call_with_retry decides whether to try again.
    def _http_get(self, url: str, dest: Path) -> None:
        with attempt_deadline(self.limits.timeout_seconds):
            for _ in range(MAX_REDIRECTS + 1):
                with self._http.stream("GET", url) as response:
                    if response.is_redirect and response.next_request is not None:
                        url = self._redirect_target(url, str(response.next_request.url))
                        continue
                    self._save(response, dest)
                    return
            raise DownloadError("too-many-redirects", f"{redact(url)}: more than {MAX_REDIRECTS} redirects")

    def _redirect_target(self, url: str, target: str) -> str:
        host = urlsplit(target).hostname or ""
        if not self.limits.allow_private_redirects and _is_private_host(host):
            raise DownloadError(
                "redirect-refused",
                f"{redact(url)} redirects to {redact(target)}, a private or "
                "loopback address (allow_private_redirects permits it)",
            )
        return target

    def _save(self, response: Any, dest: Path) -> None:
        response.raise_for_status()
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.limits.max_bytes:
            raise TooLarge("response", int(declared))
        received = 0
        with open(dest, "wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                received += len(chunk)
                if received > self.limits.max_bytes:
                    raise TooLarge("response", received)
                out.write(chunk)
        boundary = multipart_boundary(response.headers.get("content-type", ""))
        if boundary is not None:
            single_part_body(dest, boundary, redact(str(response.url)))

    def _object_get(self, url: str, dest: Path) -> None:
        parts = urlsplit(url)
        store = self._store(parts.scheme.lower(), parts.netloc)
        store.download(unquote(parts.path.lstrip("/")), dest, max_bytes=self.limits.max_bytes)

    def _store(self, scheme: str, bucket: str) -> ObjectStore:
        """The bucket's store, one attempt per call (``fetch`` retries), clients made once per batch."""
        from clinicflow.connectors.objectstore.clients import gcs_client, s3_client

        store = self._stores.get((scheme, bucket))
        if store is None:
            if scheme == "gs":
                self._gcs = self._gcs or gcs_client()
                store = GcsStore(
                    self._gcs,
                    bucket,
                    retry=_ONE_ATTEMPT,
                    timeout_seconds=self.limits.timeout_seconds,
                    metadata_timeout_seconds=self.limits.connect_timeout_seconds,
                )
            else:
                self._s3 = self._s3 or s3_client()
                store = S3Store(self._s3, bucket, retry=_ONE_ATTEMPT)
            self._stores[(scheme, bucket)] = store
        return store

    def _classify(self, exc: BaseException, url: str) -> DownloadError:
        where = redact(url)
        if isinstance(exc, TooLarge):
            return DownloadError("too-large", f"{where}: more than the {self.limits.max_bytes}-byte limit")
        status = _status_of(exc)
        if status is not None:
            return DownloadError(
                f"http-{status}", f"{where}: HTTP {status}" + (" after retries" if is_transient(exc) else "")
            )
        if isinstance(exc, (TimeoutError, TransientError)) or "Timeout" in type(exc).__name__:
            return DownloadError(
                "timeout",
                f"{where}: timed out ({type(exc).__name__}; {self.limits.timeout_seconds:g} s a transfer, "
                f"{self.limits.retry.retries + 1} attempts)",
            )
        if is_transient(exc):
            return DownloadError("connection", f"{where}: {type(exc).__name__} after retries")
        return DownloadError("download-error", f"{where}: {type(exc).__name__}")


def _status_of(exc: BaseException) -> int | None:
    """HTTP status of an httpx / google / botocore error, if it has one."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    code = getattr(exc, "code", None)
    if isinstance(code, int) and type(exc).__module__.startswith("google"):
        return code
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str) and code.isdigit():
            return int(code)
    return None
