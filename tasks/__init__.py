"""Prefect tasks: thin wrappers around the library. Importing the package routes library logs into run logs."""
from __future__ import annotations

from typing import Any

from clinicflow.core.logs import use_run_logger


def prefect_run_logger() -> Any | None:
    """Prefect's run logger inside a flow or task run, else None (installed into clinicflow.core.logs)."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return None


use_run_logger(prefect_run_logger)
