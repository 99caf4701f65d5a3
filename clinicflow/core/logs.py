"""Logging: plain stdlib loggers under the ``clinicflow`` namespace.

The library knows nothing of Prefect. Inside a flow or task run its messages reach the run's logs because
Prefect attaches its API log handler to the ``clinicflow`` logger: ``PREFECT_LOGGING_EXTRA_LOGGERS=clinicflow``,
set wherever flows run (the image, prefect.yaml's job variables, the CronJob, the CLI through
``flows.runtime.prepare_embedded_environment``, the test session) and read by Prefect once, when it is first
imported. Outside a run the handler drops them (``PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW=ignore``) and they
reach the console through the root logger.
"""

from __future__ import annotations

import logging

ROOT = "clinicflow"


def get_logger(name: str = ROOT) -> logging.Logger:
    """The stdlib logger ``name``, placed under the ``clinicflow`` namespace (``flows.x`` becomes
    ``clinicflow.flows.x``) so Prefect's extra-logger handler sees it."""
    if name != ROOT and not name.startswith(ROOT + "."):
        name = f"{ROOT}.{name}"
    return logging.getLogger(name)
