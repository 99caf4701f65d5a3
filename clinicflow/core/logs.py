"""Logging: the orchestrator's run logger inside a run (when one is installed), a stdlib logger outside.

The library knows nothing of Prefect: ``flows`` installs Prefect's run logger with :func:`use_run_logger`
when it is imported, so inside a flow or task run library messages reach the run's logs.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

_run_logger: Callable[[], Any | None] | None = None


def use_run_logger(factory: Callable[[], Any | None] | None) -> None:
    """Install the factory that returns the current run's logger, or None outside a run."""
    global _run_logger
    _run_logger = factory


def get_logger(name: str = "clinicflow") -> Any:
    """The current run's logger when called inside a run, else the stdlib logger ``name``."""
    if _run_logger is not None:
        logger = _run_logger()
        if logger is not None:
            return logger
    return logging.getLogger(name)
