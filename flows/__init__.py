"""Prefect flows: wiring only. Library messages reach run logs through PREFECT_LOGGING_EXTRA_LOGGERS
(clinicflow.core.logs)."""
