"""The one retry policy: which errors are transient, and how long to wait.

Transient means "the same call may succeed later": lost or refused
connections, lock wait timeouts, deadlocks, HTTP timeouts, 429 and 5xx.
SQL errors, data errors, 403 and 404 are never retried: repeating them
only delays the failure report.

Prefect tasks use :data:`TASK_RETRY` (``@task(**TASK_RETRY)``); code that
runs inside one task and needs its own retries (one download among many)
uses :func:`call_with_retry` (coroutines: :func:`acall_with_retry`) with a
:class:`RetryPolicy`. Both use the same classification and the same
exponential backoff with jitter; a failure's own delay hint (an HTTP
``Retry-After``) takes the place of the backoff delay.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
# ``RetryPolicy(retries=FOREVER)``: retry for as long as it takes (a connection a long-running service keeps).
FOREVER = sys.maxsize
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
    if isinstance(
        exc,
        (
            socket.timeout,
            TimeoutError,
            ConnectionResetError,
            ConnectionRefusedError,
            ConnectionAbortedError,
            BrokenPipeError,
        ),
    ):
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
        return name in {
            "ConnectTimeout",
            "ReadTimeout",
            "WriteTimeout",
            "PoolTimeout",
            "ConnectError",
            "ReadError",
            "WriteError",
            "RemoteProtocolError",
        }
    if module.startswith(("google.api_core", "google.auth")):
        code = getattr(exc, "code", None)
        return code in HTTP_TRANSIENT_STATUS or type(exc).__name__ in {
            "ServiceUnavailable",
            "TooManyRequests",
            "InternalServerError",
            "GatewayTimeout",
            "TransportError",
        }
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


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def delay_hint(exc: BaseException) -> float | None:
    """The wait the failure itself asks for: a ``retry_after`` attribute (seconds) or an HTTP response's
    ``Retry-After`` header, on the exception or one of its causes; None when nothing asks."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        hinted = getattr(current, "retry_after", None)
        if isinstance(hinted, (int, float)) and not isinstance(hinted, bool):
            return max(0.0, float(hinted))
        headers = getattr(getattr(current, "response", None), "headers", None)
        if headers is not None and hasattr(headers, "get"):
            seconds = retry_after_seconds(headers.get("Retry-After"))
            if seconds is not None:
                return seconds
        current = current.__cause__ or current.__context__
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try again and how long to wait: the one set of retry knobs.

    ``retries`` retries after the first attempt; the waits are ``base_seconds``, doubled each retry,
    with jitter (or, Prefect-style, the given ``fixed_delays``, the last one repeating), unless the
    failure carries a delay hint (Retry-After), which wins, capped at ``max_hint_seconds``.
    ``retry_on`` classifies a failure as worth another try (default :func:`is_transient`).
    """

    retries: int = MAX_RETRIES
    base_seconds: float = BACKOFF_BASE_SECONDS
    jitter: float = JITTER_FACTOR
    max_hint_seconds: float = 300.0
    retry_on: Callable[[BaseException], bool] = field(default=is_transient, compare=False)
    fixed_delays: tuple[float, ...] = ()

    def delays(self) -> list[float]:
        """The backoff delays before each retry, without jitter."""
        return backoff_delays(self.retries, self.base_seconds)

    def delay(self, attempt: int, exc: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based): the failure's hint, else backoff."""
        hint = delay_hint(exc) if exc is not None else None
        if hint is not None:
            return min(hint, self.max_hint_seconds)
        if self.fixed_delays:
            return self.fixed_delays[min(attempt, len(self.fixed_delays) - 1)]
        return _jittered(self.base_seconds * (2 ** min(attempt, 30)), self.jitter)  # 2**30: no float overflow

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        return attempt < self.retries and self.retry_on(exc)


DEFAULT_POLICY = RetryPolicy()


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
    policy: RetryPolicy = DEFAULT_POLICY,
    logger: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    before_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``fn`` and retry the failures ``policy`` calls worth another try, waiting between attempts.

    ``what`` names the thing being done (a table, a file key; never a URL with credentials) for the
    log. ``before_retry`` runs before each retry (reconnect, roll back).
    """
    log = logger or logging.getLogger("clinicflow.core.retry")
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not policy.should_retry(attempt, exc):
                raise
            delay = policy.delay(attempt, exc)
            _log_retry(log, what, exc, attempt, policy, delay)
            sleep(delay)
            if before_retry is not None:
                before_retry(exc)
            attempt += 1


async def acall_with_retry(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    logger: logging.Logger | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """:func:`call_with_retry` for coroutines: awaits ``fn()`` and ``sleep`` between attempts."""
    log = logger or logging.getLogger("clinicflow.core.retry")
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not policy.should_retry(attempt, exc):
                raise
            delay = policy.delay(attempt, exc)
            _log_retry(log, what, exc, attempt, policy, delay)
            await sleep(delay)
            attempt += 1


def _log_retry(
    log: logging.Logger, what: str, exc: BaseException, attempt: int, policy: RetryPolicy, delay: float
) -> None:
    of = "" if policy.retries >= FOREVER else f"/{policy.retries}"
    log.warning("%s: transient error (%s), retry %d%s in %.1fs", what, type(exc).__name__, attempt + 1, of, delay)
