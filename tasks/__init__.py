"""Prefect tasks: thin wrappers around the library. Library messages reach run logs through
PREFECT_LOGGING_EXTRA_LOGGERS (clinicflow.core.logs)."""
