"""The ``clinicflow`` command line.

Each module in ``clinicflow/commands/`` adds its commands through a
``register(app)`` function, so features stay in their own files.
"""
from __future__ import annotations

import importlib
import pkgutil

from clinicflow import secret_env
from clinicflow.prefect_runtime import prepare_embedded_environment

# Before anything imports Prefect: it reads these settings once.
prepare_embedded_environment()

import typer  # noqa: E402

import clinicflow.commands  # noqa: E402

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
    secret_env.capture()  # before any command: no subprocess of any library inherits a password
    app()


if __name__ == "__main__":
    main()
