"""``clinicflow serve --workers N``: N API processes on one listening socket, and the one dispatcher.

The serve process binds the socket, starts the dispatcher process and N
``python -m clinicflow.service.workers <fd>`` children that each run the app
(:func:`create_app` with ``dispatch=False``) on the inherited socket; the
kernel spreads connections over them. A child that dies is started again.
Each child gets the secrets the CLI captured on a pipe
(:func:`secret_env.handover`), never in its environment (uvicorn's own
``workers`` would start children without them).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType

from clinicflow.core import secret_env

log = logging.getLogger("clinicflow.service")
# A child that dies this soon after its start is not restarted at once (a broken set-up, not a crash).
RESTART_PAUSE_SECONDS = 5.0
FAILED_STARTS = 5  # children dead within RESTART_PAUSE_SECONDS of their start, in a row: give up


def start_with_secrets(command: list[str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    """``command`` as a child process; the secrets the CLI captured reach it on a pipe, not in its environ."""
    env, pipe = secret_env.handover(dict(os.environ))
    try:
        return subprocess.Popen(command, env=env, pass_fds=pass_fds if pipe is None else (*pass_fds, pipe))
    finally:
        if pipe is not None:
            os.close(pipe)


def supervise(start: Callable[[], subprocess.Popen[bytes]], count: int, what: str) -> int:
    """``count`` children from ``start``, each started again when it exits, until SIGTERM/SIGINT; then all
    are stopped (SIGTERM, up to 30 s, then SIGKILL). Returns 0, or 1 when a child keeps dying at start
    (:data:`FAILED_STARTS` in a row, each within :data:`RESTART_PAUSE_SECONDS`): a missing setting restarted
    forever in a pod that looked Running; exiting lets Kubernetes show CrashLoopBackOff and the log says why."""
    stopping = {"now": False}
    quick_deaths = dict.fromkeys(range(count), 0)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping["now"] = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    children = {slot: (start(), time.monotonic()) for slot in range(count)}
    try:
        while not stopping["now"]:
            time.sleep(0.5)
            for slot, (child, started) in list(children.items()):
                if child.poll() is None or stopping["now"]:
                    continue
                quick = time.monotonic() - started < RESTART_PAUSE_SECONDS
                quick_deaths[slot] = quick_deaths[slot] + 1 if quick else 0
                if quick_deaths[slot] >= FAILED_STARTS:
                    log.error(
                        "%s exited with %s at start %d times in a row: stopping (its log above says why)",
                        what,
                        child.returncode,
                        quick_deaths[slot],
                    )
                    return 1
                log.warning("%s pid %s exited with %s; starting another", what, child.pid, child.returncode)
                if quick:
                    time.sleep(RESTART_PAUSE_SECONDS)
                children[slot] = (start(), time.monotonic())
        return 0
    finally:
        for child, _ in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child, _ in children.values():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_workers(host: str, port: int, workers: int) -> int:
    """Until SIGTERM/SIGINT; exit code 0."""
    from clinicflow.service.dispatcher_process import DispatcherProcess

    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)
    listener.set_inheritable(True)
    fd = listener.fileno()
    command = [sys.executable, "-m", "clinicflow.service.workers", str(fd)]
    dispatcher = DispatcherProcess()
    dispatcher.start()
    try:
        return supervise(lambda: start_with_secrets(command, (fd,)), workers, "API process")
    finally:
        dispatcher.stop()
        listener.close()


def serve_on_socket(fd: int) -> None:
    """One API process on the inherited listening socket ``fd`` (no dispatcher of its own)."""
    import uvicorn

    from clinicflow.service.app import create_app
    from clinicflow.service.settings import settings_from_env

    app = create_app(settings_from_env(), dispatch=False)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info"))
    server.run(sockets=[socket.socket(fileno=fd)])


if __name__ == "__main__":
    secret_env.capture_and_reexec()
    serve_on_socket(int(sys.argv[1]))
