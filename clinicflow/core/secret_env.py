"""Secrets given as environment variables, kept out of the process environment once the CLI starts.

Any library may start a subprocess with a copy of ``os.environ`` (Prefect's vendored croniter runs
``file -b <python>`` when imported), and a password there can be read in ``/proc/PID/environ``.
The CLI moves the secret-named ``CLINICFLOW_*`` variables into this module at start
(:func:`capture`); the environment builders read them through :func:`getenv`. Removing them from
``os.environ`` does not remove them from ``/proc/PID/environ`` (the start-up environment), so the
CLI then re-executes itself without them (:func:`capture_and_reexec`), handing them over on a pipe.
"""

from __future__ import annotations

import json
import os
import sys

SECRET_SUFFIXES = ("_PASSWORD", "_API_KEY", "_TOKEN", "_SECRET", "_URL", "_SERVICE_ACCOUNT_INFO")
_captured: dict[str, str] = {}


def is_secret_name(name: str) -> bool:
    return name.startswith("CLINICFLOW_") and name.endswith(SECRET_SUFFIXES)


def capture() -> None:
    """Move secret-named ``CLINICFLOW_*`` variables out of ``os.environ`` (children no longer inherit them)."""
    for name in [n for n in os.environ if is_secret_name(n)]:
        _captured[name] = os.environ.pop(name)


REEXEC_FD = "CLINICFLOW_SECRETS_FD"
# A pipe holds this much without a reader; more secrets than that stay in the start-up environment.
_PIPE_BYTES = 60_000


def capture_and_reexec() -> None:
    """:func:`capture`, then exec this same command line again without the secrets in its environment
    (they arrive on an inherited pipe), so ``/proc/PID/environ`` of the running program holds none."""
    inherited = os.environ.pop(REEXEC_FD, None)
    if inherited is not None and inherited.isdigit():
        with os.fdopen(int(inherited), "rb") as pipe:
            _captured.update(json.loads(pipe.read() or b"{}"))
        capture()
        return
    capture()
    payload = json.dumps(_captured).encode()
    if not _captured or len(payload) > _PIPE_BYTES or not getattr(sys, "orig_argv", None):
        return
    read, write = os.pipe()
    os.write(write, payload)
    os.close(write)
    os.set_inheritable(read, True)
    os.execve(sys.executable, sys.orig_argv, {**os.environ, REEXEC_FD: str(read)})


def handover(env: dict[str, str]) -> tuple[dict[str, str], int | None]:
    """Environment and inheritable pipe (pass it in ``pass_fds``, close it after the start) for a child of
    this program that calls :func:`capture_and_reexec`: it gets the captured secrets on the pipe, not in
    its start-up environment. ``None`` when there is nothing to hand over (or too much: then in ``env``)."""
    payload = json.dumps(_captured).encode()
    if not _captured:
        return dict(env), None
    if len(payload) > _PIPE_BYTES:
        return {**env, **_captured}, None
    read, write = os.pipe()
    os.write(write, payload)
    os.close(write)
    return {**env, REEXEC_FD: str(read)}, read


def getenv(name: str, default: str | None = None) -> str | None:
    """``os.environ[name]`` when set (it wins: set after start), else the captured value, else ``default``."""
    value = os.environ.get(name)
    if value is not None:
        return value
    return _captured.get(name, default)


def names() -> set[str]:
    """Every variable name visible through :func:`getenv`."""
    return set(os.environ) | set(_captured)
