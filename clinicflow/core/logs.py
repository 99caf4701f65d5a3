"""Logging helper: the Prefect run logger inside a run, a plain logger outside."""
from __future__ import annotations

import logging
from typing import Any


def get_logger(name: str = "clinicflow") -> Any:
    """Return Prefect's run logger when called inside a flow or task run, else a stdlib logger."""
    try:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        try:
            return get_run_logger()
        except MissingContextError:
            pass
    except ImportError:  # pragma: no cover
        pass
    return logging.getLogger(name)
