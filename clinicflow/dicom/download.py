"""Fetch one DICOM file from where the reports table says it is.

Locations: ``http(s)://``, ``gs://bucket/key``, ``s3://bucket/key``,
``file:///abs/path``, absolute paths, and paths relative to a configured
base (a folder, or an ``http(s)``/``gs``/``s3`` URL prefix). Relative paths
may not climb out of their base (``..``).

Downloads are streamed to disk (memory: one chunk), bounded in size and
time, and retried with exponential backoff and jitter on transient failures
only — timeouts, connection errors, HTTP 5xx and 429 — through the project's
one retry policy. 404, 403 and other client errors fail at once.
Failures raise :class:`DownloadError` with a short ``kind`` for counting and
a ``reason`` for people; neither ever contains credentials (URLs are shown
without their user info and query string).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from clinicflow.retry import BACKOFF_BASE_SECONDS, MAX_RETRIES, TransientError, call_with_retry, is_transient

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int = 2 * 1024**3
    timeout_seconds: float = 300.0  # whole transfer, per attempt
    connect_timeout_seconds: float = 10.0
    retries: int = MAX_RETRIES
    backoff_base_seconds: float = BACKOFF_BASE_SECONDS


class DownloadError(Exception):
    """A file that could not be fetched. ``kind``: e.g. ``http-404``, ``timeout``, ``too-large``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class _TooLarge(Exception):
    pass


def redact(url: str) -> str:
    """A URL safe to log: no user info, no query string, no fragment."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


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
        return urljoin(prefix, quote(relative.as_posix())) if base_scheme in ("http", "https") else prefix + relative.as_posix()
    return str(Path(base) / relative)


class Downloader:
    """Fetches files for one batch; holds the HTTP connection pool and cloud clients.

    Use as a context manager (closes the HTTP client).
    """

    def __init__(self, limits: DownloadLimits = DownloadLimits(), base: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx

        self.limits = limits
        self.base = base
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=httpx.Timeout(limits.timeout_seconds, connect=limits.connect_timeout_seconds),
            follow_redirects=True,
        )
        self._gcs: Any = None
        self._s3: Any = None

    def __enter__(self) -> "Downloader":
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
        fetchers = {"http": self._http_get, "https": self._http_get, "gs": self._gs_get, "s3": self._s3_get}
        fetch_once = fetchers[scheme]
        try:
            call_with_retry(lambda: fetch_once(resolved, dest), what=what, retries=self.limits.retries,
                            base=self.limits.backoff_base_seconds, sleep=self._sleep)
        except DownloadError:
            dest.unlink(missing_ok=True)
            raise
        except Exception as exc:
            dest.unlink(missing_ok=True)
            raise self._classify(exc, resolved) from None
        return dest

    # -- local files: no copy, the file is used where it is.
    def _local(self, resolved: str) -> Path:
        path = Path(unquote(urlsplit(resolved).path)) if resolved.startswith("file:") else Path(resolved)
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
        deadline = time.monotonic() + self.limits.timeout_seconds
        with self._http.stream("GET", url) as response:
            response.raise_for_status()
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.limits.max_bytes:
                raise _TooLarge(int(declared))
            received = 0
            with open(dest, "wb") as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    received += len(chunk)
                    if received > self.limits.max_bytes:
                        raise _TooLarge(received)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"transfer exceeded {self.limits.timeout_seconds:g}s")
                    out.write(chunk)

    def _gs_get(self, url: str, dest: Path) -> None:
        from blocks.buckets import gcs_client

        parts = urlsplit(url)
        if self._gcs is None:
            self._gcs = gcs_client()
        blob = self._gcs.bucket(parts.netloc).blob(unquote(parts.path.lstrip("/")))
        blob.reload(timeout=self.limits.connect_timeout_seconds)
        if blob.size is not None and blob.size > self.limits.max_bytes:
            raise _TooLarge(blob.size)
        blob.download_to_filename(str(dest), timeout=self.limits.timeout_seconds)

    def _s3_get(self, url: str, dest: Path) -> None:
        from blocks.buckets import s3_client

        parts = urlsplit(url)
        if self._s3 is None:
            self._s3 = s3_client()
        bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
        head = self._s3.head_object(Bucket=bucket, Key=key)
        if int(head.get("ContentLength", 0)) > self.limits.max_bytes:
            raise _TooLarge(int(head["ContentLength"]))
        self._s3.download_file(bucket, key, str(dest))

    def _classify(self, exc: BaseException, url: str) -> DownloadError:
        where = redact(url)
        if isinstance(exc, _TooLarge):
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
