"""The process supervisor of task workers and API processes: a child that keeps dying at start stops it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from clinicflow.service import workers


def test_a_child_that_keeps_dying_at_start_ends_the_supervisor_with_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing setting (the pod lacked the bucket Secret) restarted the worker forever in a pod shown Running."""
    real_sleep = time.sleep
    monkeypatch.setattr(workers.time, "sleep", lambda _seconds: real_sleep(0.05))
    monkeypatch.setattr(workers, "RESTART_PAUSE_SECONDS", 2.0)
    starts: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        starts.append(1)
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    assert workers.supervise(start, 1, "task worker") == 1
    assert len(starts) == workers.FAILED_STARTS
