"""HTTP extractor against a local HTTP server.

Pagination styles, 429 + Retry-After, transient 5xx, dropped connections.
"""

from __future__ import annotations

import time

import pytest

from clinicflow.core.retry import RetryPolicy
from clinicflow.toolkit.base import RunContext, ToolkitError
from clinicflow.toolkit.http import (
    CursorPagination,
    HttpExtractor,
    LinkPagination,
    OffsetPagination,
    PagePagination,
    TokenBucket,
)
from tests.integration.toolkit.conftest import ITEMS, Api
from tests.unit.toolkit.test_http import FakeClock

CTX = RunContext()


def ids(extractor: HttpExtractor) -> list[int]:
    return [r["id"] for b in extractor.extract(CTX) for r in b.as_dicts()]


@pytest.mark.parametrize(
    ("path", "pagination", "records_path"),
    [
        ("/pages", PagePagination(page_size=10), "data"),
        ("/offset", OffsetPagination(limit=10), "data"),
        ("/cursor", CursorPagination(cursor_path="meta.next"), "data"),
        ("/link", LinkPagination(), ""),
    ],
)
def test_every_pagination_style_reads_all_records_once(
    api: Api, path: str, pagination: object, records_path: str
) -> None:
    extractor = HttpExtractor(api.base + path, pagination=pagination, records_path=records_path)  # type: ignore[arg-type]
    assert ids(extractor) == [item["id"] for item in ITEMS]
    # 23 items in pages of 10: three requests; by page number or offset a fourth, empty, says the short third
    # page was the last (a cursor or a link says it itself)
    assert api.state.hits[path] == (4 if path in ("/pages", "/offset") else 3)


def test_a_next_link_in_the_body_pages_drf_and_fhir_searches_and_an_empty_bundle_has_no_records(api: Api) -> None:
    drf = HttpExtractor(api.base + "/drf", records_path="results", pagination=LinkPagination(next_path="next"))
    assert ids(drf) == [item["id"] for item in ITEMS]
    fhir = HttpExtractor(api.base + "/fhir/Patient", records_path="entry", pagination=LinkPagination(next_path="link"))
    records = [r for b in fhir.extract(CTX) for r in b.as_dicts()]
    assert [r["resource"]["id"] for r in records] == [item["id"] for item in ITEMS]
    assert api.state.hits["/fhir/Patient"] == 3
    nobody = {"name": "nobody"}
    empty = HttpExtractor(
        api.base + "/fhir/Patient", params=nobody, records_path="entry", pagination=LinkPagination(next_path="link")
    )
    with pytest.raises(
        ToolkitError, match=r"no list at records_path 'entry' \(the body's keys: resourceType, type, link\)"
    ):
        ids(empty)
    empty.empty_when_missing = True
    assert ids(empty) == []


def test_429_waits_for_retry_after_then_succeeds(api: Api) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    extractor = HttpExtractor(api.base + "/limited", records_path="data", sleep=sleep, retry=RetryPolicy(3, 0.01))
    assert ids(extractor) == [1, 2, 3]
    assert slept == [1.0]
    assert api.state.hits["/limited"] == 2


def test_transient_5xx_and_dropped_connections_are_retried(api: Api) -> None:
    flaky = HttpExtractor(api.base + "/flaky", records_path="data", retry=RetryPolicy(3, 0.01))
    assert ids(flaky) == [1, 2]
    assert api.state.hits["/flaky"] == 3
    assert len(flaky.waits) == 2
    dropped = HttpExtractor(api.base + "/drop", records_path="data", retry=RetryPolicy(3, 0.01))
    assert ids(dropped) == [1]
    assert api.state.hits["/drop"] == 2


def test_gives_up_after_max_retries_and_never_retries_404(api: Api) -> None:
    down = HttpExtractor(api.base + "/always503", records_path="data", retry=RetryPolicy(2, 0.01))
    with pytest.raises(ToolkitError, match=r"HTTP 503 from http://127\.0\.0\.1"):
        ids(down)
    assert api.state.hits["/always503"] == 3
    with pytest.raises(ToolkitError, match="HTTP 404"):
        ids(HttpExtractor(api.base + "/missing", retry=RetryPolicy(3, 0.01)))
    assert api.state.hits["/missing"] == 1


def test_errors_never_show_url_credentials(api: Api) -> None:
    url = api.base.replace("http://", "http://user:fake-sentinel-not-a-credential-13@") + "/missing?token=abc"
    with pytest.raises(ToolkitError) as err:
        ids(HttpExtractor(url))
    assert "fake-sentinel-not-a-credential-13" not in str(err.value)
    assert "abc" not in str(err.value)


def test_wrong_records_path_is_named(api: Api) -> None:
    with pytest.raises(ToolkitError, match="no list at records_path 'items'"):
        ids(HttpExtractor(api.base + "/pages", records_path="items"))


def test_an_api_that_caps_its_page_size_is_read_whole_and_an_ignored_page_param_is_an_error(api: Api) -> None:
    # Pages of 4 where 10 were asked: a short page that is not the last (the first page alone was 4 of 23 rows).
    capped = HttpExtractor(
        api.base + "/pages", params={"cap": 4}, records_path="data", pagination=PagePagination(page_size=10)
    )
    assert len(ids(capped)) == 23
    # An API that answers 404 past its last page (Django REST framework's "Invalid page."): the end, not an error.
    strict = HttpExtractor(
        api.base + "/pages", params={"strict": 1}, records_path="data", pagination=PagePagination(page_size=10)
    )
    assert len(ids(strict)) == 23
    # A mistyped page parameter the API ignores: the same full page forever (14,500 requests), now an error.
    ignored = HttpExtractor(
        api.base + "/pages", records_path="data", pagination=PagePagination(page_param="p", page_size=10)
    )
    with pytest.raises(ToolkitError, match="the same page came back for p=2"):
        ids(ignored)


def test_rate_limited_extractor_waits_between_requests(api: Api) -> None:
    clock = FakeClock()
    extractor = HttpExtractor(
        api.base + "/pages",
        records_path="data",
        pagination=PagePagination(page_size=10),
        rate_limit_per_second=1,
        rate_limit_burst=1,
    )
    extractor.limiter = TokenBucket(1, 1, clock=clock, sleep=clock.sleep)
    assert len(ids(extractor)) == 23
    assert clock.sleeps == pytest.approx([1.0, 1.0, 1.0])  # 4 requests, burst 1, 1 per second
