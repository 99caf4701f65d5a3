"""The ``clinicflow`` command line.

Each module in ``clinicflow/commands/`` adds its commands through a
``register(app)`` function, so features stay in their own files.
"""
from __future__ import annotations

import importlib
import os
import pkgutil

# Prefect's embedded server (no API configured: local runs, the CronJob) must
# start before Prefect reads its settings; 20 s is too short on a busy 2-core pod.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import typer

import clinicflow.commands

app = typer.Typer(help="clinicflow: production ETL for clinics (OpenDental, DICOM reports).", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)


def _register_commands() -> None:
    for module in sorted(pkgutil.iter_modules(clinicflow.commands.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"clinicflow.commands.{module.name}")
        register = getattr(mod, "register", None)
        if register is not None:
            register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
