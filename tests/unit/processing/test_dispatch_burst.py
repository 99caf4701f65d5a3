"""The dispatcher claims a burst's rows once they stop arriving (bounded), one quiet period after a lone row."""

from __future__ import annotations

import asyncio

import pytest

from clinicflow.service import dispatch


def _sleeps(monkeypatch: pytest.MonkeyPatch, dispatcher: dispatch.Dispatcher, rows_during: int) -> list[float]:
    """Run ``_burst_written`` where a new row arrives during each of the first ``rows_during`` waits."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) <= rows_during:
            dispatcher.wake()
        await real_sleep(0)

    monkeypatch.setattr(dispatch.asyncio, "sleep", fake_sleep)
    asyncio.run(dispatcher._burst_written())
    return slept


def _dispatcher() -> dispatch.Dispatcher:
    return dispatch.Dispatcher(pool=None, deployment="process-data/process-data")  # type: ignore[arg-type]


def test_a_lone_row_waits_one_quiet_period(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _sleeps(monkeypatch, _dispatcher(), rows_during=0) == [dispatch.BURST_QUIET_SECONDS]


def test_a_burst_is_claimed_once_rows_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(_sleeps(monkeypatch, _dispatcher(), rows_during=3)) == 4


def test_an_endless_stream_is_claimed_after_the_bounded_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    slept = _sleeps(monkeypatch, _dispatcher(), rows_during=10_000)
    assert sum(slept) == pytest.approx(dispatch.BURST_WAIT_SECONDS, abs=dispatch.BURST_QUIET_SECONDS)
