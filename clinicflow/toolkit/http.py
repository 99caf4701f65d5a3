"""HTTP extractor: the one HTTP fetch (retries honouring Retry-After, redacted URLs), a token-bucket rate limiter,
pagination.

Pagination styles: ``page`` (page number parameter), ``offset`` (offset/limit
parameters), ``cursor`` (a cursor taken from the response body), ``link``
(RFC 8288 ``Link: <...>; rel="next"`` header). Records are read from
``records_path`` in the JSON body (dotted, empty for a top-level list).
Requests go through :func:`clinicflow.connectors.http.fetch`; which failures are transient comes from
:mod:`clinicflow.core.retry`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from clinicflow.connectors.http import HttpFetchError, fetch, redact
from clinicflow.core.retry import RetryPolicy
from clinicflow.toolkit.base import Batch, RunContext, ToolkitError

# The extractor's default: 3 retries, 1 s first delay (the config's defaults too).
HTTP_RETRY = RetryPolicy(3, 1.0)


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, with bursts up to ``capacity``.

    Thread-safe; callers block in :meth:`acquire` until a token is free.
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else max(1.0, rate))
        self.tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self) -> float:
        """Take one token, waiting if none is left; returns the seconds waited."""
        waited = 0.0
        with self._lock:
            self._refill()
            while self.tokens < 1.0:
                delay = (1.0 - self.tokens) / self.rate
                self._sleep(delay)
                waited += delay
                self._refill()
            self.tokens -= 1.0
        return waited


class PagePagination(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a mistyped key ("page_parm") is named, not ignored
    style: Literal["page"] = "page"
    page_param: str = "page"
    first_page: int = 1
    size_param: str | None = "per_page"
    page_size: int = 100


class OffsetPagination(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a mistyped key ("page_parm") is named, not ignored
    style: Literal["offset"] = "offset"
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100


class CursorPagination(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a mistyped key ("page_parm") is named, not ignored
    style: Literal["cursor"] = "cursor"
    cursor_param: str = "cursor"
    cursor_path: str = Field(
        "next_cursor", description="Dotted path of the next cursor in the JSON body; empty or null ends."
    )


class LinkPagination(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a mistyped key ("page_parm") is named, not ignored
    style: Literal["link"] = "link"
    next_path: str = Field(
        "",
        description="Dotted path of the next page's URL in the JSON body: `next` (Django REST framework), "
        "`links.next` (JSON:API), `_links.next` (HAL, its `href`), `link` (a FHIR Bundle: the entry whose relation "
        "is `next`); empty or null ends. Empty path: the HTTP `Link` header's rel=next.",
    )


def next_url_in_body(body: Any, path: str) -> str | None:
    """The next page's URL at ``path``: a string, an object's ``href``/``url``, or the ``next`` one of a list of
    links (FHIR's ``[{"relation": "next", "url": ...}]``)."""
    value = dig(body, path)
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, dict) and v.get("relation") == "next"), None)
    if isinstance(value, dict):
        value = value.get("href") or value.get("url")
    return value if isinstance(value, str) and value else None


class NoPagination(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a mistyped key ("page_parm") is named, not ignored
    style: Literal["none"] = "none"


Pagination = PagePagination | OffsetPagination | CursorPagination | LinkPagination | NoPagination


def dig(body: Any, path: str) -> Any:
    """``body`` at dotted ``path`` ('' is the body itself); None when a key is missing."""
    current = body
    for part in filter(None, path.split(".")):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


class HttpExtractor:
    """GET (or POST) JSON pages and yield their records as batches."""

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        timeout_seconds: float = 30.0,
        records_path: str = "",
        empty_when_missing: bool = False,
        pagination: Pagination | None = None,
        retry: RetryPolicy = HTTP_RETRY,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: float | None = None,
        max_pages: int = 100_000,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, self.method = url, method.upper()
        self.headers, self.params = dict(headers or {}), dict(params or {})
        self.timeout_seconds, self.records_path = timeout_seconds, records_path
        self.empty_when_missing = empty_when_missing
        self.pagination: Pagination = pagination or NoPagination()
        self.retry, self.max_pages = retry, max_pages
        self.sleep, self.transport = sleep, transport
        self.limiter = (
            TokenBucket(rate_limit_per_second, rate_limit_burst, sleep=sleep) if rate_limit_per_second else None
        )
        self.requests_made = 0
        self.waits: list[float] = []

    def _display_url(self) -> str:
        return redact(self.url)  # never print credentials embedded in a URL

    def request(
        self, client: httpx.Client, url: str, params: dict[str, Any], *, past_the_end: bool = False
    ) -> httpx.Response | None:
        """One request with rate limiting and retries of transient failures. ``past_the_end``: the page after a
        short one, which an API may refuse (Django REST framework's 404 "Invalid page."): None then, the end."""

        def before_attempt() -> None:
            if self.limiter is not None:
                self.limiter.acquire()
            self.requests_made += 1

        try:
            return fetch(
                client,
                url,
                method=self.method,
                params=params,
                policy=self.retry,
                sleep=self._wait,
                before_attempt=before_attempt,
            )
        except HttpFetchError as exc:
            if past_the_end and exc.status in (400, 404, 416):
                return None
            raise ToolkitError(str(exc)) from None

    def _wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sleep(seconds)

    def extract(self, ctx: RunContext) -> Iterator[Batch]:
        p = self.pagination
        params = dict(self.params)
        url = self.url
        if isinstance(p, PagePagination):
            params[p.page_param] = p.first_page
            if p.size_param:
                params[p.size_param] = p.page_size
        elif isinstance(p, OffsetPagination):
            params[p.offset_param], params[p.limit_param] = 0, p.limit
        with httpx.Client(
            headers=self.headers, timeout=self.timeout_seconds, transport=self.transport, follow_redirects=True
        ) as client:
            previous: bytes | None = None  # the last page's body: a page served twice is the end, or a wrong param
            for _ in range(self.max_pages):
                counted = isinstance(p, (PagePagination, OffsetPagination))
                found = self.request(client, url, params, past_the_end=counted and previous is not None)
                if found is None:
                    return
                response = found
                if counted and previous is not None and response.content == previous[1:]:
                    if previous[:1] == b"s":  # after a short page: the API serves its last page again
                        return
                    name = p.page_param if isinstance(p, PagePagination) else p.offset_param  # type: ignore[union-attr]
                    raise ToolkitError(
                        f"{self._display_url()}: the same page came back for {name}={params[name]}: the API does not "
                        f"page by {name!r} (check the pagination's keys)"
                    )
                try:
                    body = response.json()
                except ValueError:
                    raise ToolkitError(f"{self._display_url()}: response is not JSON") from None
                records = dig(body, self.records_path)
                if records is None and self.empty_when_missing and isinstance(body, dict):
                    records = []
                if not isinstance(records, list):
                    keys = f" (the body's keys: {', '.join(list(body)[:12])})" if isinstance(body, dict) else ""
                    raise ToolkitError(f"{self._display_url()}: no list at records_path {self.records_path!r}{keys}")
                if records:
                    yield Batch.from_dicts(r if isinstance(r, dict) else {"value": r} for r in records)
                # A short page ends the list only when the next page is empty (or that page again): an API that caps
                # its page size below page_size serves short pages that are not the last.
                if isinstance(p, PagePagination):
                    if not records:
                        return
                    previous = (b"s" if len(records) < p.page_size else b"f") + response.content
                    params[p.page_param] += 1
                elif isinstance(p, OffsetPagination):
                    if not records:
                        return
                    previous = (b"s" if len(records) < p.limit else b"f") + response.content
                    params[p.offset_param] += len(records)
                elif isinstance(p, CursorPagination):
                    cursor = dig(body, p.cursor_path)
                    if cursor in (None, ""):
                        return
                    params[p.cursor_param] = cursor
                elif isinstance(p, LinkPagination):
                    next_link = (
                        next_url_in_body(body, p.next_path)
                        if p.next_path
                        else response.links.get("next", {}).get("url")
                    )
                    if not next_link:
                        return
                    url, params = str(response.url.join(next_link)), {}
                else:
                    return
            raise ToolkitError(f"{self._display_url()}: stopped after max_pages={self.max_pages} pages")
