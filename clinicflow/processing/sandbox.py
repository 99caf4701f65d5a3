"""The sandbox custom scripts run in: no credentials, no network, no view of other processes, bounded.

Modes (``CLINICFLOW_PROCESSING_SANDBOX``: ``auto`` (default), ``bwrap``, ``uid``, ``process``):

- ``bwrap``: bubblewrap namespaces: own PID namespace (every child dies with it), no network, a
  read-only view of the Python installation only (no /etc, /home, repository or scripts folder),
  a private tmpfs /tmp; when the service runs as root the runner also drops to a one-off uid.
- ``uid``: no namespaces (some containers); the runner drops to a one-off unprivileged uid, and
  every process of that uid is killed when the run ends. World-readable files stay readable.
- ``process``: only the empty environment, the rlimits and the process-group kill; for a
  container that is itself the sandbox (Kubernetes: ``k8s/script-runner-deployment.yaml``).
- ``unavailable``: ``auto`` found neither bubblewrap nor root; custom scripts are refused.

Every mode: an environment holding only what Python needs, rlimits (address space, CPU, processes,
file size, open files), the input as stdin (an open file), the result read from stdout up to a
limit, stderr drained and only its tail kept, the whole group/namespace killed on return and on timeout
(:mod:`clinicflow.processing.teardown`).
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import secrets
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clinicflow.core import settings
from clinicflow.processing import teardown

Mode = Literal["bwrap", "uid", "process", "unavailable"]
MODES = settings.SANDBOX_MODES
# One-off uids for script runs: far above any real account, one per run (runs cannot signal each other).
RUN_UID_BASE = 2_100_000_000
RUN_UID_SPAN = 10_000_000
STDERR_TAIL_BYTES = 64 * 1024
READ_BLOCK = 64 * 1024
# What Python, numpy and pandas need; nothing else of the service's environment reaches a script.
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
log = logging.getLogger("clinicflow.processing")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one script run (the ``CLINICFLOW_PROCESSING_SCRIPT_*`` variables)."""

    memory_bytes: int = 2 << 30
    processes: int = 16
    file_bytes: int = 64 << 20
    open_files: int = 256
    result_bytes: int = 16 << 20

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            memory_bytes=settings.script_memory_mb() << 20,
            processes=settings.script_processes(),
            file_bytes=settings.script_file_mb() << 20,
            open_files=settings.script_open_files(),
            result_bytes=max_result_bytes(),
        )


def max_result_bytes() -> int:
    """The largest result stored (any processor): ``CLINICFLOW_PROCESSING_MAX_RESULT_MB``, default 16 MiB."""
    return settings.processing_max_result_mb() << 20


@dataclass
class Outcome:
    """What came back from a run: its exit status, stdout (at most the limit), the end of stderr."""

    returncode: int
    stdout: bytes
    stderr_tail: bytes
    timed_out: bool = False
    stdout_over_limit: bool = False
    notes: list[str] = field(default_factory=list)


def requested_mode() -> str:
    return settings.processing_sandbox()


@functools.lru_cache(maxsize=8)
def _bwrap_works(bwrap: str) -> bool:
    try:
        probe = subprocess.run(
            [bwrap, *_namespace_args(), "--ro-bind", "/", "/", "--", "/bin/true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
            env={},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def active_mode() -> Mode:
    """The mode scripts run in now (probes bubblewrap once per process)."""
    wanted = requested_mode()
    bwrap = shutil.which("bwrap")
    if wanted in ("auto", "bwrap") and bwrap and _bwrap_works(bwrap):
        return "bwrap"
    if wanted == "bwrap":
        return "unavailable"
    if wanted in ("auto", "uid") and os.geteuid() == 0 and _reachable_by_others(_python_roots()):
        return "uid"
    if wanted == "process":
        return "process"
    return "unavailable"


def _reachable_by_others(roots: list[str]) -> bool:
    """A uid dropped to can run this Python: every folder above its installation lets others through."""
    for root in roots:
        for folder in (Path(root), *Path(root).parents):
            if not folder.stat().st_mode & 0o001:
                return False
    return True


def describe_mode(mode: Mode | None = None) -> str:
    mode = mode or active_mode()
    return {
        "bwrap": "bubblewrap namespaces (no network, own PID namespace, read-only Python only)"
        + (" and a one-off uid" if os.geteuid() == 0 else ""),
        "uid": "a one-off unprivileged uid, no namespaces",
        "process": "rlimits and an empty environment only (the container is the sandbox)",
        "unavailable": "none: custom scripts are refused (install bubblewrap, or run as root with a "
        "Python installation other users can read, "
        "or set CLINICFLOW_PROCESSING_SANDBOX=process in an isolated container)",
    }[mode]


def log_mode() -> Mode:
    mode = active_mode()
    log.info("custom script sandbox: %s (%s)", mode, describe_mode(mode))
    return mode


def _namespace_args() -> list[str]:
    user = [] if os.geteuid() == 0 else ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    return [
        *user,
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
    ]


def _python_roots() -> list[str]:
    """The folders the interpreter and its packages live in (read-only inside the sandbox)."""
    roots: list[str] = []
    for path in (
        sys.base_prefix,
        sys.prefix,
        os.path.realpath(sys.base_prefix),
        os.path.realpath(sys.prefix),
        os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
    ):
        if path and path not in roots and not any(path.startswith(r.rstrip("/") + "/") for r in roots):
            roots.append(path)
    return roots


def _bwrap_argv(bwrap: str, runner: Path, drop_uid: bool) -> list[str]:
    argv = [bwrap, *_namespace_args(), "--clearenv"]
    for name, value in SANDBOX_ENV.items():
        argv += ["--setenv", name, value]
    for system in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(system):
            argv += ["--symlink", os.readlink(system), system]
        elif os.path.isdir(system):
            argv += ["--ro-bind", system, system]
    # The private /tmp first: an interpreter or venv that lives under /tmp (a checkout there) is bound over it.
    argv += ["--perms", "1777", "--tmpfs", "/tmp"]
    made: set[str] = set()
    for root in _python_roots():
        if not root.startswith(("/usr/", "/bin/", "/lib")):
            # Parents bubblewrap creates would be 0700: a uid dropped to could not reach the interpreter.
            for parent in reversed(Path(root).parents[:-1]):
                if str(parent) not in made:
                    made.add(str(parent))
                    argv += ["--perms", "0755", "--dir", str(parent)]
            argv += ["--ro-bind", root, root]
    if os.path.exists("/etc/ld.so.cache"):
        argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    argv += [
        "--ro-bind",
        str(runner),
        "/run/clinicflow/custom_runner.py",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--chdir",
        "/tmp",
    ]
    if drop_uid:
        # Root in the sandbox keeps only what it needs to drop to the run's uid (the runner does it first).
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return [*argv, "--", sys.executable, "-I", "/run/clinicflow/custom_runner.py"]


def _limit_preexec(limits: Limits, cpu_seconds: int) -> None:
    """In the child before exec: its rlimits (kept by bwrap and every descendant). No import here (fork)."""
    for which, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))


def run_request(
    mode: Mode,
    runner: Path,
    request: bytes,
    data: Path,
    *,
    limits: Limits,
    timeout: float,
    poll: Callable[[], None] | None = None,
) -> Outcome:
    """One script run: the request and the data file handed over as open files, a private work dir.

    ``poll`` is called while the script runs; whatever it raises stops the run (everything killed)."""
    with tempfile.TemporaryDirectory(prefix="clinicflow-custom-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        request_file = Path(tmp) / "request.json"
        request_file.write_bytes(request)
        with open(request_file, "rb") as request_in, open(data, "rb") as data_in:
            return run_in_sandbox(
                mode,
                runner,
                stdin_fd=data_in.fileno(),
                request_fd=request_in.fileno(),
                limits=limits,
                timeout=timeout,
                workdir=work,
                poll=poll,
            )


def run_in_sandbox(
    mode: Mode,
    runner: Path,
    *,
    stdin_fd: int,
    request_fd: int,
    limits: Limits,
    timeout: float,
    workdir: Path,
    poll: Callable[[], None] | None = None,
) -> Outcome:
    """Run the runner script in ``mode``; ``stdin_fd`` is its input, ``request_fd`` its request (kept open)."""
    if mode == "unavailable":
        raise RuntimeError(describe_mode(mode))
    drop_uid = os.geteuid() == 0 and mode in ("bwrap", "uid")
    run_uid = RUN_UID_BASE + secrets.randbelow(RUN_UID_SPAN) if drop_uid else None
    if mode == "bwrap":
        bwrap = shutil.which("bwrap")
        assert bwrap is not None
        argv = _bwrap_argv(bwrap, runner, drop_uid)
    else:
        argv = [sys.executable, "-I", str(runner)]
        if run_uid is not None:
            os.chown(workdir, run_uid, run_uid)
    argv += [
        "--request-fd",
        str(request_fd),
        "--tmp",
        "/tmp" if mode == "bwrap" else str(workdir),
        "--processes",
        str(limits.processes),
    ]
    if run_uid is not None:
        argv += ["--uid", str(run_uid)]
    cpu = max(1, int(timeout) + 1)
    process = subprocess.Popen(
        argv,
        stdin=stdin_fd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(request_fd,),
        env=dict(SANDBOX_ENV),
        cwd=workdir,
        start_new_session=True,
        preexec_fn=lambda: _limit_preexec(limits, cpu),
    )
    try:
        return _collect(process, limits, time.monotonic() + timeout, run_uid, poll)
    finally:
        teardown.kill_run(process, run_uid)


def _collect(
    process: subprocess.Popen[bytes],
    limits: Limits,
    deadline: float,
    run_uid: int | None,
    poll: Callable[[], None] | None = None,
) -> Outcome:
    """Read stdout (up to the limit) and stderr (its tail) as they come, until both end or the deadline."""
    assert process.stdout is not None
    assert process.stderr is not None
    out = bytearray()
    tail = bytearray()
    over = timed_out = False
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, "out")
        selector.register(process.stderr, selectors.EVENT_READ, "err")

        def read_ready(wait: float) -> bool:
            """Read what is ready; False once the result is over its limit."""
            nonlocal out, tail
            for key, _ in selector.select(wait):
                block = os.read(key.fd, READ_BLOCK)
                if not block:
                    selector.unregister(key.fileobj)
                elif key.data == "out":
                    out += block
                    if len(out) > limits.result_bytes:
                        return False
                else:
                    tail += block
                    if len(tail) > 2 * STDERR_TAIL_BYTES:
                        del tail[:-STDERR_TAIL_BYTES]
            return True

        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not read_ready(min(left, 0.2)):
                over = True
                break
            if poll is not None:
                poll()
            if process.poll() is not None:
                # The runner is gone: what it wrote is in the pipes; a child it left may hold them open.
                teardown.kill_group(process)
                teardown.kill_uid(run_uid)
                while selector.get_map() and selector.select(0):
                    if not read_ready(0):
                        over = True
                        break
                break
    if timed_out or over:
        teardown.kill_group(process)
    try:
        returncode = process.wait(timeout=max(0.0, deadline - time.monotonic()) + 5)
    except subprocess.TimeoutExpired:
        teardown.kill_group(process)
        returncode = process.wait()
        timed_out = True
    return Outcome(
        returncode=returncode,
        stdout=bytes(out[: limits.result_bytes]),
        stderr_tail=bytes(tail[-STDERR_TAIL_BYTES:]),
        timed_out=timed_out,
        stdout_over_limit=over,
    )
