"""Nothing of a script run survives it: its process group, every process of its one-off uid, and (in the
script-runner service, a subreaper) every orphan it left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def kill_run(process: subprocess.Popen[bytes], run_uid: int | None) -> None:
    """Nothing of the run survives it: its group (bubblewrap: its PID namespace) and every process of its uid."""
    kill_group(process)
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    kill_uid(run_uid)


def become_subreaper() -> None:
    """Orphans of this process's descendants are re-parented here (the script-runner service)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def kill_adopted_children() -> int:
    """SIGKILL every child of this process and reap it: after a run, what a script left (a subreaper only)."""
    me = str(os.getpid())
    killed: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if parent == me:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    for pid in killed:  # reaped, so not even a zombie is left
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return len(killed)


def kill_uid(run_uid: int | None) -> None:
    """kill(-1) as the run's uid: every process of that uid (children in a new session included)."""
    if run_uid is None:
        return
    pid = os.fork()
    if pid == 0:  # only system calls here: nothing that could wait on a lock of another thread
        try:
            os.setgroups([])
            os.setgid(run_uid)
            os.setuid(run_uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
