"""The one HTTP fetch: httpx, the project's retry policy, and URLs that never show their secrets.

:func:`redact` is the form of a URL that may be logged, stored or raised: no user info, no query
string, no fragment (signed URLs and tokens live there). :func:`fetch` sends one request, retries
transient failures (:mod:`clinicflow.core.retry`: 408/425/429/5xx, dropped connections; a
``Retry-After`` header sets the wait) and raises :class:`HttpFetchError` naming only the redacted URL;
httpx's own messages carry the full URL, so they never escape from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from clinicflow.core.errors import ClinicflowError
from clinicflow.core.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry


def redact(url: str) -> str:
    """A URL safe to log: no user info, no query string, no fragment."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class HttpFetchError(ClinicflowError):
    """A request that failed for good. ``status`` is the HTTP status (None: no answer); the message names
    the redacted URL only."""

    def __init__(self, message: str, *, status: int | None, attempts: int) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


def fetch(
    client: httpx.Client,
    url: str,
    *,
    method: str = "GET",
    params: dict[str, Any] | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    before_attempt: Callable[[], None] | None = None,
    **request: Any,
) -> httpx.Response:
    """``client.request(method, url, …)`` with a 2xx answer (``raise_for_status``), retried per ``policy``.

    ``before_attempt`` runs before every attempt (a rate limiter). Raises :class:`HttpFetchError`.
    """
    attempts = 0

    def once() -> httpx.Response:
        nonlocal attempts
        if before_attempt is not None:
            before_attempt()
        attempts += 1
        response = client.request(method, url, params=params or None, **request)
        response.raise_for_status()
        return response

    try:
        return call_with_retry(once, what=f"{method} {redact(url)}", policy=policy, sleep=sleep)
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        raise HttpFetchError(f"HTTP {status} from {redact(url)}", status=status, attempts=attempts) from None
    except httpx.HTTPError as exc:
        raise HttpFetchError(
            f"{type(exc).__name__} calling {redact(url)} after {attempts} attempt(s)", status=None, attempts=attempts
        ) from None
