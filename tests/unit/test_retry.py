"""The one retry policy: transient errors retry with backoff, the rest fail at once."""
from __future__ import annotations

import pytest

from clinicflow.core.retry import PermanentError, TransientError, backoff_delays, call_with_retry


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
