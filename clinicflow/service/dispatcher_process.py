"""The API's dispatcher child process (:mod:`.dispatch` runs in it): started, restarted if it dies, stopped.

The child tells its parent when it is ready (Prefect client connected, task imported) with one byte on an
inherited pipe; until then ``/health`` says the service is starting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading

from clinicflow.core import secret_env

log = logging.getLogger("clinicflow.service")
# The dispatcher child writes one byte to this inherited descriptor once it is ready.
READY_FD_ENV = "CLINICFLOW_DISPATCHER_READY_FD"


class DispatcherProcess:
    """The API's dispatcher child (``python -m clinicflow.service.dispatch``), restarted if it dies.

    A process of its own: creating runs (Prefect client models, HTTP) never takes the API's interpreter
    from answering requests. The secrets reach it on a pipe (:func:`secret_env.handover`), not in its
    environment. It exits when the API does (it watches its parent).
    """

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._ready = threading.Event()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._ready.clear()
        env, pipe = secret_env.handover(dict(os.environ))
        ready_read, ready_write = os.pipe()
        env[READY_FD_ENV] = str(ready_write)
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "clinicflow.service.dispatch"],
                env=env,
                pass_fds=(ready_write,) if pipe is None else (pipe, ready_write),
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
            if pipe is not None:
                os.close(pipe)
        threading.Thread(
            target=self._await_ready, args=(ready_read,), name="clinicflow-dispatcher-ready", daemon=True
        ).start()
        return child

    def _await_ready(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as ready:
            if ready.read(1):  # empty: the child ended before it was ready
                self._ready.set()

    def start(self) -> None:
        with self._lock:
            self._child = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="clinicflow-dispatcher-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            with self._lock:
                if self._child is not None and self._child.poll() is not None and not self._stopping.is_set():
                    log.warning(
                        "dispatcher pid %s exited with %s; starting another", self._child.pid, self._child.returncode
                    )
                    self._child = self._spawn()

    def alive(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def state(self) -> str:
        """``ready`` (runs are created at once), ``starting`` or ``stopped``."""
        if not self.alive():
            return "stopped"
        return "ready" if self._ready.is_set() else "starting"

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


def say_ready() -> None:
    """One byte on the pipe the API process waits on (:class:`DispatcherProcess`), if it gave one."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(int(fd), b"1")
            os.close(int(fd))
