"""HTTP extractor parts that need no server: the token bucket, Retry-After dates, headers from the environment."""

from __future__ import annotations

from datetime import UTC

import pytest

from clinicflow.core.retry import retry_after_seconds
from clinicflow.toolkit.base import RunContext, ToolkitError
from clinicflow.toolkit.http import TokenBucket

CTX = RunContext()


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


def test_retry_after_http_date() -> None:
    from datetime import datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds("soon") is None


def test_header_values_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinicflow.toolkit.configs import built, extractor_of

    config = extractor_of(
        {
            "kind": "http",
            "url": "{base}/x",
            "headers": {"Authorization": "${TK_API_TOKEN}", "Accept": "application/json"},
        }
    )
    ctx = RunContext(parameters={"base": "http://h"})
    with pytest.raises(ToolkitError, match="header Authorization: environment variable TK_API_TOKEN is not set"):
        built(config, ctx)
    monkeypatch.setenv("TK_API_TOKEN", "Bearer fake-sentinel-not-a-credential-19")
    tool = built(config, ctx)
    assert tool.headers == {"Authorization": "Bearer fake-sentinel-not-a-credential-19", "Accept": "application/json"}
    assert tool.url == "http://h/x"
    # Inside a value too: "Bearer ${TOKEN}" was sent as written (HTTP 401, no word of why).
    inside = extractor_of({"kind": "http", "url": "http://h/x", "headers": {"Authorization": "Bearer ${TK_RAW}"}})
    monkeypatch.setenv("TK_RAW", "fake-sentinel-not-a-credential-19")
    assert built(inside, ctx).headers == {"Authorization": "Bearer fake-sentinel-not-a-credential-19"}
