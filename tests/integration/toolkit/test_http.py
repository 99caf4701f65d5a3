"""HTTP extractor against a local HTTP server: pagination styles, 429 + Retry-After, transient 5xx, dropped connections."""
from __future__ import annotations

import time

import pytest

from clinicflow.toolkit.base import RunContext, ToolkitError
from clinicflow.toolkit.http import (
    CursorPagination,
    HttpExtractor,
    LinkPagination,
    OffsetPagination,
    PagePagination,
    TokenBucket,
    retry_after_seconds,
)
from tests.integration.toolkit.conftest import ITEMS, Api

CTX = RunContext()


def ids(extractor: HttpExtractor) -> list[int]:
    return [r["id"] for b in extractor.extract(CTX) for r in b.as_dicts()]


@pytest.mark.parametrize("path, pagination, records_path", [
    ("/pages", PagePagination(page_size=10), "data"),
    ("/offset", OffsetPagination(limit=10), "data"),
    ("/cursor", CursorPagination(cursor_path="meta.next"), "data"),
    ("/link", LinkPagination(), ""),
])
def test_every_pagination_style_reads_all_records_once(api: Api, path: str, pagination: object, records_path: str) -> None:
    extractor = HttpExtractor(api.base + path, pagination=pagination, records_path=records_path)  # type: ignore[arg-type]
    assert ids(extractor) == [item["id"] for item in ITEMS]
    # 23 items in pages of 10: three requests (page/offset need no empty fourth page)
    assert api.state.hits[path] == 3


def test_429_waits_for_retry_after_then_succeeds(api: Api) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    extractor = HttpExtractor(api.base + "/limited", records_path="data", sleep=sleep, backoff_seconds=0.01)
    assert ids(extractor) == [1, 2, 3]
    assert slept == [1.0] and api.state.hits["/limited"] == 2


def test_transient_5xx_and_dropped_connections_are_retried(api: Api) -> None:
    flaky = HttpExtractor(api.base + "/flaky", records_path="data", backoff_seconds=0.01)
    assert ids(flaky) == [1, 2]
    assert api.state.hits["/flaky"] == 3 and len(flaky.waits) == 2
    dropped = HttpExtractor(api.base + "/drop", records_path="data", backoff_seconds=0.01)
    assert ids(dropped) == [1]
    assert api.state.hits["/drop"] == 2


def test_gives_up_after_max_retries_and_never_retries_404(api: Api) -> None:
    down = HttpExtractor(api.base + "/always503", records_path="data", max_retries=2, backoff_seconds=0.01)
    with pytest.raises(ToolkitError, match="HTTP 503 from http://127.0.0.1"):
        ids(down)
    assert api.state.hits["/always503"] == 3
    with pytest.raises(ToolkitError, match="HTTP 404"):
        ids(HttpExtractor(api.base + "/missing", backoff_seconds=0.01))
    assert api.state.hits["/missing"] == 1


def test_errors_never_show_url_credentials(api: Api) -> None:
    url = api.base.replace("http://", "http://user:s3cret@") + "/missing?token=abc"
    with pytest.raises(ToolkitError) as err:
        ids(HttpExtractor(url))
    assert "s3cret" not in str(err.value) and "abc" not in str(err.value)


def test_wrong_records_path_is_named(api: Api) -> None:
    with pytest.raises(ToolkitError, match="no list at records_path 'items'"):
        ids(HttpExtractor(api.base + "/pages", records_path="items"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_token_bucket_allows_the_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, capacity=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(0.5)
    assert bucket.acquire() == pytest.approx(0.5)
    clock.now += 10  # idle time refills only up to the capacity
    assert [bucket.acquire() for _ in range(4)] == pytest.approx([0, 0, 0, 0.5])
    # 11 acquisitions over the fake time: never more than capacity + rate * elapsed
    assert len(clock.sleeps) == 3


def test_rate_limited_extractor_waits_between_requests(api: Api) -> None:
    clock = FakeClock()
    extractor = HttpExtractor(api.base + "/pages", records_path="data", pagination=PagePagination(page_size=10),
                              rate_limit_per_second=1, rate_limit_burst=1)
    extractor.limiter = TokenBucket(1, 1, clock=clock, sleep=clock.sleep)
    assert len(ids(extractor)) == 23
    assert clock.sleeps == pytest.approx([1.0, 1.0])  # 3 requests, burst 1, 1 per second


def test_retry_after_http_date() -> None:
    from datetime import datetime, timezone

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30
    assert retry_after_seconds("7") == 7 and retry_after_seconds("soon") is None


def test_header_values_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinicflow.toolkit.configs import extractor_of

    config = extractor_of({"kind": "http", "url": "{base}/x", "headers": {"Authorization": "${TK_API_TOKEN}",
                                                                           "Accept": "application/json"}})
    ctx = RunContext(parameters={"base": "http://h"})
    with pytest.raises(ToolkitError, match="header Authorization: environment variable TK_API_TOKEN is not set"):
        config.build(ctx)
    monkeypatch.setenv("TK_API_TOKEN", "Bearer t0k3n")
    built = config.build(ctx)
    assert built.headers == {"Authorization": "Bearer t0k3n", "Accept": "application/json"}
    assert built.url == "http://h/x"
