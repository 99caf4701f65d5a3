"""The ``clinicflow`` command line.

Each module of this package adds its commands through one ``register_*(app)`` function, so features
stay in their own files. In a source checkout the dev-only package ``clinicflow_dev`` adds ``demo`` and
``generate-opendental`` (the image and the wheel do not carry it).
"""
from __future__ import annotations

import importlib.util

from clinicflow.core import secret_env
from flows.runtime import prepare_embedded_environment

# Before anything imports Prefect: it reads these settings once.
prepare_embedded_environment()

import typer  # noqa: E402

from clinicflow.cli.blocks import register_blocks  # noqa: E402
from clinicflow.cli.dicom import register_dicom  # noqa: E402
from clinicflow.cli.ingest import register_ingest  # noqa: E402
from clinicflow.cli.nightly import register_nightly  # noqa: E402
from clinicflow.cli.pipelines import register_pipelines  # noqa: E402
from clinicflow.cli.replicate import register_replicate  # noqa: E402
from clinicflow.cli.schema import register_schema  # noqa: E402
from clinicflow.cli.serve import register_serve  # noqa: E402
from clinicflow.cli.status import register_status  # noqa: E402

app = typer.Typer(help="clinicflow: production ETL for clinics (OpenDental, DICOM reports).", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)

for _register in (register_blocks, register_dicom, register_ingest, register_nightly, register_pipelines,
                  register_replicate, register_schema, register_serve, register_status):
    _register(app)

if importlib.util.find_spec("clinicflow_dev") is not None:
    from clinicflow_dev.demo_command import register_demo
    from clinicflow_dev.generate_command import register_generate

    register_demo(app)
    register_generate(app)


def main() -> None:
    secret_env.capture()  # before any command: no subprocess of any library inherits a password
    app()

