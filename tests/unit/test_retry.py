"""The one retry policy: transient errors retry with backoff, the rest fail at once."""

from __future__ import annotations

import pytest

from clinicflow.core.retry import (
    PermanentError,
    RetryPolicy,
    TransientError,
    acall_with_retry,
    backoff_delays,
    call_with_retry,
    delay_hint,
)


def test_call_with_retry_retries_transient_then_succeeds() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("try again")
        return "ok"

    assert call_with_retry(flaky, what="flaky", sleep=sleeps.append) == "ok"
    assert len(calls) == 3
    assert len(sleeps) == 2
    assert sleeps[1] > 0


def test_call_with_retry_does_not_retry_permanent() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise PermanentError("404")

    with pytest.raises(PermanentError):
        call_with_retry(broken, what="broken", sleep=lambda s: None)
    assert calls == [1]


def test_backoff_is_exponential() -> None:
    assert backoff_delays(3, 2.0) == [2.0, 4.0, 8.0]


def _http_error(status: int, retry_after: str | None = None) -> Exception:
    import httpx

    request = httpx.Request("GET", "http://api.example/x")
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


def test_a_retry_after_header_sets_the_wait_instead_of_the_backoff() -> None:
    failures = [_http_error(429, "7"), _http_error(503, "Thu, 01 Jan 2099 00:00:00 GMT"), _http_error(503)]
    sleeps: list[float] = []

    def limited() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    policy = RetryPolicy(retries=3, base_seconds=0.5, jitter=0.0, max_hint_seconds=60.0)
    assert call_with_retry(limited, what="limited", policy=policy, sleep=sleeps.append) == "ok"
    # the hint (7 s); a far date capped at max_hint_seconds; no hint: the backoff of the third attempt
    assert sleeps == [7.0, 60.0, 2.0]


def test_delay_hint_is_found_on_a_cause_or_a_retry_after_attribute() -> None:
    wrapped = TransientError("LLM: HTTP 429")
    wrapped.__cause__ = _http_error(429, "3")
    assert delay_hint(wrapped) == 3.0
    own = TransientError("slow down")
    own.retry_after = 1.5  # type: ignore[attr-defined]
    assert delay_hint(own) == 1.5
    assert delay_hint(_http_error(503)) is None
    assert delay_hint(TransientError("x")) is None


def test_the_policy_stops_after_its_retries_and_only_retries_what_it_classifies() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise TransientError("down")

    with pytest.raises(TransientError):
        call_with_retry(down, what="down", policy=RetryPolicy(retries=2, base_seconds=0), sleep=lambda s: None)
    assert len(calls) == 3
    calls.clear()
    anything = RetryPolicy(retries=1, base_seconds=0, retry_on=lambda exc: True)
    with pytest.raises(ValueError, match="invalid literal"):
        call_with_retry(lambda: calls.append(1) or int("x"), what="any", policy=anything, sleep=lambda s: None)
    assert len(calls) == 2


def test_before_retry_runs_between_attempts() -> None:
    events: list[str] = []

    def flaky() -> str:
        events.append("call")
        if events.count("call") < 2:
            raise TransientError("lost connection")
        return "ok"

    call_with_retry(
        flaky,
        what="flaky",
        policy=RetryPolicy(1, 0),
        sleep=lambda s: None,
        before_retry=lambda exc: events.append("reconnect"),
    )
    assert events == ["call", "reconnect", "call"]


def test_the_async_twin_retries_with_the_same_policy_and_hint() -> None:
    import asyncio

    failures = [_http_error(429, "4"), TransientError("reset")]
    sleeps: list[float] = []

    async def limited() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    policy = RetryPolicy(retries=2, base_seconds=0.25, jitter=0.0)
    assert asyncio.run(acall_with_retry(limited, what="async", policy=policy, sleep=record)) == "ok"
    assert sleeps == [4.0, 0.5]

    async def broken() -> None:
        raise PermanentError("404")

    with pytest.raises(PermanentError):
        asyncio.run(acall_with_retry(broken, what="broken", policy=policy, sleep=record))
    assert len(sleeps) == 2


def test_fixed_delays_replace_the_backoff_and_the_last_one_repeats() -> None:
    policy = RetryPolicy(retries=4, fixed_delays=(1.0, 5.0))
    assert [policy.delay(attempt) for attempt in range(4)] == [1.0, 5.0, 5.0, 5.0]
    assert policy.delay(0, _http_error(429, "2")) == 2.0  # a hint still wins


def test_a_policy_of_forever_keeps_retrying_and_logs_no_total(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from clinicflow.core.retry import FOREVER

    failures = 50
    sleeps: list[float] = []

    async def down_a_while() -> str:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionRefusedError("database restarting")
        return "up"

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    policy = RetryPolicy(retries=FOREVER, fixed_delays=(1.0, 2.0, 30.0))
    with caplog.at_level("WARNING"):
        assert asyncio.run(acall_with_retry(down_a_while, what="listen", policy=policy, sleep=record)) == "up"
    assert sleeps == [1.0, 2.0] + [30.0] * 48
    assert caplog.messages[-1] == "listen: transient error (ConnectionRefusedError), retry 50 in 30.0s"
    assert RetryPolicy(retries=FOREVER, jitter=0.0).delay(5000) == 2.0 * 2**30  # no float overflow
