"""The ``clinicflow`` command line.

Every command is a module-level function of this package's modules; groups (``blocks``, ``cdc``, ``dicom``,
``fanout``, ``ingest``, ``dlq``, ``pipelines``, ``processing``) are module-level Typer sub-apps. This module adds
them all to ``app``, so one place shows the whole command line. In a source checkout the dev-only package
``clinicflow_dev`` adds ``demo`` and ``generate-opendental`` (the image and the wheel do not carry it).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import sys

from clinicflow.core import secret_env
from flows.runtime import prepare_embedded_environment

# Before anything imports Prefect: it reads these settings once.
prepare_embedded_environment()

import typer  # noqa: E402

from clinicflow.cli.blocks import blocks_app  # noqa: E402
from clinicflow.cli.cdc import cdc_app  # noqa: E402
from clinicflow.cli.dicom import dicom_app  # noqa: E402
from clinicflow.cli.fanout import fanout_app  # noqa: E402
from clinicflow.cli.ingest import dlq_app, ingest_app  # noqa: E402
from clinicflow.cli.nightly import load_command, nightly_command  # noqa: E402
from clinicflow.cli.pipelines import pipelines_app  # noqa: E402
from clinicflow.cli.processing import processing_app  # noqa: E402
from clinicflow.cli.replicate import replicate_command  # noqa: E402
from clinicflow.cli.schema import analyze_schema_command, schema_show_command, schema_validate_command  # noqa: E402
from clinicflow.cli.serve import serve_command  # noqa: E402
from clinicflow.cli.status import status_command  # noqa: E402

app = typer.Typer(
    help="clinicflow: production ETL for clinics: the OpenDental nightly (and CDC), DICOM reports, file ingestion, "
    "the pipeline toolkit, the processing service, fan-out.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

app.command("nightly")(nightly_command)
app.command("load")(load_command)
app.command("replicate")(replicate_command)
app.command("analyze-schema")(analyze_schema_command)
app.command("validate")(schema_validate_command)
app.command("show")(schema_show_command)
app.command("serve")(serve_command)
app.command("status")(status_command)

if importlib.util.find_spec("clinicflow_dev") is not None:
    from clinicflow_dev.demo_command import demo_command
    from clinicflow_dev.generate_command import generate_opendental_command

    app.command("demo")(demo_command)
    app.command("generate-opendental")(generate_opendental_command)

app.add_typer(blocks_app, name="blocks")
app.add_typer(cdc_app, name="cdc")
app.add_typer(dicom_app, name="dicom")
app.add_typer(fanout_app, name="fanout")
app.add_typer(ingest_app, name="ingest")
app.add_typer(dlq_app, name="dlq")
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(processing_app, name="processing")


PIPED_COLUMNS = 200


def _exit_status(code: object) -> int:
    """The process exit status Python gives ``SystemExit(code)``."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _exit_without_teardown(status: list[int]) -> None:
    """The last exit handler: flush what is buffered and end the process without the interpreter's teardown.

    Every other exit handler (Prefect's log and event drains among them) has run by then, and threads
    were joined; what is left is freeing the tens of thousands of objects Prefect's import made, which
    took seconds of a short command's wall time on a loaded machine (bench/results/loading-history.md).
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status[0])


def main() -> None:
    # Before any command: no subprocess of any library inherits a password, and /proc/PID/environ of
    # this process holds none (re-executed without them).
    secret_env.capture_and_reexec()
    # Registered before any command imports Prefect: exit handlers run last-registered first, so this one
    # runs after Prefect's. An exception escaping the command exits 1, as Python would.
    status = [1]
    atexit.register(_exit_without_teardown, status)
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        # Piped, redirected or in a pod's log: rich's tables at 80 columns fold run ids and uris over lines.
        os.environ["COLUMNS"] = str(PIPED_COLUMNS)
    try:
        app()
        status[0] = 0
    except SystemExit as exc:
        status[0] = _exit_status(exc.code)
        raise
