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
operation (connect, every read, every write) by a network backend that cuts
each operation's timeout to the time left; a read timeout alone resets on
every byte, so a server trickling one byte a second would never time out.
Reads wait in short steps so that a stop request (SIGTERM, see
:mod:`clinicflow.core.cancel`) ends a download within a fraction of a second.

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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from clinicflow.connectors.http import redact
from clinicflow.connectors.objectstore.stores import GcsStore, ObjectStore, S3Store, TooLarge
from clinicflow.core import cancel
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.retry import DEFAULT_POLICY, RetryPolicy, TransientError, call_with_retry, is_transient

CHUNK_BYTES = 1 << 20
MAX_REDIRECTS = 5
# A blocked read wakes this often to see whether the run was asked to stop.
STOP_POLL_SECONDS = 0.25
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


_attempt = threading.local()  # .deadline: time.monotonic() by which this thread's HTTP attempt must end


def _time_left(timeout: float | None) -> float | None:
    """``timeout`` cut to this thread's attempt deadline; raises a timeout when none is left."""
    import httpcore

    deadline = getattr(_attempt, "deadline", None)
    if deadline is None:
        return timeout
    left: float = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("download deadline reached")
    return left if timeout is None else min(timeout, left)


def _deadline_backend() -> Any:
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            until = None if timeout is None else time.monotonic() + timeout
            while True:
                cancel.check()
                left = _time_left(None if until is None else max(0.0, until - time.monotonic()))
                if left is not None and left <= 0:
                    raise httpcore.ReadTimeout("read timed out")
                try:
                    data: bytes = self._stream.read(max_bytes, STOP_POLL_SECONDS if left is None
                                                    else min(left, STOP_POLL_SECONDS))
                    return data
                except httpcore.ReadTimeout:
                    continue  # a timed-out recv consumed nothing: the deadlines are checked again above

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            cancel.check()
            self._stream.write(buffer, _time_left(timeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                      timeout: float | None = None) -> Any:
            return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _time_left(timeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self._backend = httpcore.SyncBackend()

        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options: Any = None) -> Any:
            cancel.check()
            return DeadlineStream(self._backend.connect_tcp(host, port, _time_left(timeout), local_address,
                                                            socket_options))

        def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
            return DeadlineStream(self._backend.connect_unix_socket(path, _time_left(timeout), socket_options))

        def sleep(self, seconds: float) -> None:
            self._backend.sleep(seconds)

    return DeadlineBackend()


def _is_private_host(host: str) -> bool:
    """True when ``host`` is, or resolves to, a private, loopback, link-local or otherwise non-public address."""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False  # unresolvable: the request itself fails
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
                or ip.is_unspecified):
            return True
    return False


def _within(path: str, root: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(path), real_root]) == real_root


class Downloader:
    """Fetches files for one batch; holds the HTTP connection pool and cloud clients.

    Use as a context manager (closes the HTTP client).
    """

    def __init__(self, limits: DownloadLimits = DownloadLimits(), base: str | None = None,
                 sleep: Callable[[float], None] = cancel.sleep) -> None:
        import httpx

        self.limits = limits
        self.base = base
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=httpx.Timeout(limits.timeout_seconds, connect=limits.connect_timeout_seconds),
            follow_redirects=False,  # followed in _http_get, each target checked
        )
        # httpx has no public hook for the network backend; every pool it made (proxies too) gets ours.
        backend = _deadline_backend()
        for transport in [self._http._transport, *self._http._mounts.values()]:
            pool = getattr(transport, "_pool", None)
            if pool is not None:
                pool._network_backend = backend
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
            raise DownloadError("bad-location", f"{path} is outside the allowed roots for local files"
                                + ("" if roots else " (none configured: set allowed_roots)"))
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
        _attempt.deadline = time.monotonic() + self.limits.timeout_seconds
        try:
            for _ in range(MAX_REDIRECTS + 1):
                with self._http.stream("GET", url) as response:
                    if response.is_redirect and response.next_request is not None:
                        url = self._redirect_target(url, str(response.next_request.url))
                        continue
                    self._save(response, dest)
                    return
            raise DownloadError("too-many-redirects", f"{redact(url)}: more than {MAX_REDIRECTS} redirects")
        finally:
            _attempt.deadline = None

    def _redirect_target(self, url: str, target: str) -> str:
        host = urlsplit(target).hostname or ""
        if not self.limits.allow_private_redirects and _is_private_host(host):
            raise DownloadError("redirect-refused", f"{redact(url)} redirects to {redact(target)}, a private or "
                                                    "loopback address (allow_private_redirects permits it)")
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
                store = GcsStore(self._gcs, bucket, retry=_ONE_ATTEMPT, timeout_seconds=self.limits.timeout_seconds,
                                 metadata_timeout_seconds=self.limits.connect_timeout_seconds)
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
            return DownloadError(f"http-{status}", f"{where}: HTTP {status}"
                                 + (" after retries" if is_transient(exc) else ""))
        if isinstance(exc, (TimeoutError, TransientError)) or "Timeout" in type(exc).__name__:
            return DownloadError("timeout", f"{where}: timed out after retries ({type(exc).__name__})")
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
