"""Cooperative cancellation: SIGTERM asks the run to stop; long operations check and stop cleanly.

Python's default SIGTERM kills the process at once, wherever it is. Runs
that keep durable progress (the DICOM flow's state tables) stop better by
finishing the step in hand: :func:`sigterm_stops_run` installs a handler
that only sets a flag; downloads check it on every socket read, batches
between files, and the flow before the next batch. A second SIGTERM
kills the process as before, for an operator who does not want to wait.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from clinicflow.core.errors import ClinicflowError

_stop = threading.Event()


class RunCancelled(ClinicflowError):
    """The run was asked to stop (SIGTERM); work done so far is saved."""


def requested() -> bool:
    return _stop.is_set()


def check() -> None:
    """Raise :class:`RunCancelled` if a stop was requested."""
    if _stop.is_set():
        raise RunCancelled("stopped by SIGTERM")


def sleep(seconds: float) -> None:
    """``time.sleep`` that a stop request cuts short (the caller checks :func:`check` next)."""
    _stop.wait(seconds)


def request_stop() -> None:
    _stop.set()


def clear() -> None:
    _stop.clear()


@contextlib.contextmanager
def sigterm_stops_run() -> Iterator[None]:
    """While inside: the first SIGTERM sets the stop flag, a second one kills as usual.

    Only in the main thread (Python delivers signals there); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: object) -> None:
        _stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop.clear()
