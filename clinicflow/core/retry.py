"""The one retry policy: which errors are transient, and how long to wait.

Transient means "the same call may succeed later": lost or refused
connections, lock wait timeouts, deadlocks, HTTP timeouts, 429 and 5xx.
SQL errors, data errors, 403 and 404 are never retried: repeating them
only delays the failure report.

Prefect tasks use :data:`TASK_RETRY` (``@task(**TASK_RETRY)``); code that
runs inside one task and needs its own retries (one download among many)
uses :func:`call_with_retry`. Both use the same classification and the same
exponential backoff with jitter.
"""
from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

from clinicflow.core.errors import ClinicflowError

T = TypeVar("T")

# MySQL/MariaDB client and server error codes worth another try.
MYSQL_TRANSIENT_CODES = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1205,  # lock wait timeout exceeded
        1213,  # deadlock found
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection (system error)
    }
)

# PostgreSQL SQLSTATE classes/codes worth another try.
PG_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})
PG_TRANSIENT_CLASSES = ("08",)  # connection exceptions

HTTP_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

MAX_RETRIES = 3
BACKOFF_BASE_SECONDS = 2.0
JITTER_FACTOR = 0.5


class TransientError(ClinicflowError):
    """Raised by project code for a failure that should be retried."""


class PermanentError(ClinicflowError):
    """Raised by project code for a failure that must not be retried."""


def is_transient(exc: BaseException) -> bool:
    """Classify one exception (and its causes) as transient or not."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_one(current):
            return True
        if isinstance(current, PermanentError):
            return False
        current = current.__cause__ or current.__context__
    return False


def _is_transient_one(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (socket.timeout, TimeoutError, ConnectionResetError, ConnectionRefusedError,
                        ConnectionAbortedError, BrokenPipeError)):
        return True
    module = type(exc).__module__ or ""
    if module.startswith("pymysql") or module.startswith("MySQLdb"):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code in MYSQL_TRANSIENT_CODES
    if module.startswith("psycopg2"):
        code = getattr(exc, "pgcode", None)
        if code is None:
            # No SQLSTATE: the connection itself broke (server closed it, network).
            return type(exc).__name__ in {"OperationalError", "InterfaceError"}
        return code in PG_TRANSIENT_SQLSTATES or code.startswith(PG_TRANSIENT_CLASSES)
    if module.startswith("httpx"):
        name = type(exc).__name__
        if name == "HTTPStatusError":
            return exc.response.status_code in HTTP_TRANSIENT_STATUS  # type: ignore[attr-defined]
        return name in {"ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout",
                        "ConnectError", "ReadError", "WriteError", "RemoteProtocolError"}
    if module.startswith(("google.api_core", "google.auth")):
        code = getattr(exc, "code", None)
        return code in HTTP_TRANSIENT_STATUS or type(exc).__name__ in {
            "ServiceUnavailable", "TooManyRequests", "InternalServerError", "GatewayTimeout", "TransportError"}
    if module.startswith(("botocore", "boto3")):
        name = type(exc).__name__
        if name in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}:
            return True
        response = getattr(exc, "response", None) or {}
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in HTTP_TRANSIENT_STATUS
    return False


def backoff_delays(retries: int = MAX_RETRIES, base: float = BACKOFF_BASE_SECONDS) -> list[float]:
    """Exponential delays before each retry: base, 2*base, 4*base, ..."""
    return [base * (2**i) for i in range(retries)]


def _jittered(delay: float, factor: float = JITTER_FACTOR) -> float:
    return max(0.0, delay * (1 + random.uniform(-factor, factor)))


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - we classify, never swallow
        return is_transient(exc)
    return False


# Spread into @task(...). Prefect applies the jitter factor to each delay.
TASK_RETRY: dict[str, Any] = {
    "retries": MAX_RETRIES,
    "retry_delay_seconds": backoff_delays(),
    "retry_jitter_factor": JITTER_FACTOR,
    "retry_condition_fn": retry_on_transient,
}


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    retries: int = MAX_RETRIES,
    base: float = BACKOFF_BASE_SECONDS,
    logger: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` and retry transient failures with backoff and jitter.

    ``what`` names the thing being done (a table, a file key) for the log.
    """
    log = logger or logging.getLogger("clinicflow.core.retry")
    delays = backoff_delays(retries, base)
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            delay = _jittered(delays[attempt])
            log.warning("%s: transient error (%s), retry %d/%d in %.1fs",
                        what, type(exc).__name__, attempt + 1, retries, delay)
            sleep(delay)
    raise AssertionError("unreachable")
