"""Prefect tasks: thin wrappers around the library. Importing the package routes library logs into run logs."""
from clinicflow.core.logs import use_run_logger
from flows.runtime import prefect_run_logger

use_run_logger(prefect_run_logger)
