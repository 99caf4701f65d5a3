"""Prefect flows: wiring only. Importing the package routes the library's logs into Prefect's run logs."""
from clinicflow.core.logs import use_run_logger
from tasks import prefect_run_logger

use_run_logger(prefect_run_logger)
