"""Demo data for the DICOM reports flow: a few pydicom test files and a reports table.

``seed_demo_reports(pg, files_dir)`` copies a handful of the test files that
ship inside pydicom (so it works offline, without the dev-only pydicom-data)
into ``files_dir`` — good ones of several kinds and a few bad ones — and
(re)creates table ``dicom_report_rows`` (with ``file://`` locations pointing
at them, several report rows per file for some) and the view
``dicom_reports`` over it in ``pg``'s database. The flow's
defaults (``query="dicom_reports"``, a local-folder bucket at ``./out/bucket``)
then run against it as they are.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from blocks.databases import PostgresServer
from clinicflow.core.sql import quote_ident

DEMO_TABLE = "dicom_report_rows"
DEMO_VIEW = "dicom_reports"


@dataclass(frozen=True)
class DemoFile:
    name: str  # file name in files_dir
    source: str | None  # pydicom test file to copy, or None for generated content
    content: bytes = b""
    reports: tuple[str, ...] = ("Normal study.",)
    modality: str = "OT"
    expected_failure: str | None = None  # "stage/kind" the flow records for a bad file


# Good files cover: uncompressed CT with rescale, signed MR with a window, JPEG-LS,
# JPEG 2000, RLE colour, multi-frame JPEG baseline YBR colour. Bad files: short
# pixel data, no pixel data (RT plan), not DICOM, empty.
DEMO_FILES: tuple[DemoFile, ...] = (
    DemoFile(
        "ct_small.dcm", "CT_small.dcm", reports=("No acute findings.", "Addendum: compared with prior."), modality="CT"
    ),
    DemoFile("mr_small.dcm", "MR_small.dcm", reports=("Unremarkable MR.",), modality="MR"),
    DemoFile(
        "mr_small_jpeg_ls.dcm", "MR_small_jpeg_ls_lossless.dcm", reports=("JPEG-LS copy of the MR.",), modality="MR"
    ),
    DemoFile("jpeg2000.dcm", "JPEG2000.dcm", reports=("JPEG 2000 image.",), modality="CT"),
    DemoFile("sc_rgb_rle.dcm", "SC_rgb_rle.dcm", reports=("Colour secondary capture.",), modality="OT"),
    DemoFile(
        "us_ybr_multiframe.dcm",
        "examples_ybr_color.dcm",
        reports=("Ultrasound cine.", "Second reader agrees."),
        modality="US",
    ),
    DemoFile(
        "mr_truncated.dcm",
        "MR_truncated.dcm",
        reports=("Truncated upload.",),
        modality="MR",
        expected_failure="decode/short-pixel-data",
    ),
    DemoFile(
        "rtplan.dcm",
        "rtplan.dcm",
        reports=("Plan object, no image.",),
        modality="RTPLAN",
        expected_failure="read/no-pixel-data",
    ),
    DemoFile(
        "not_dicom.dcm",
        None,
        content=b"This is a scanned fax, not a DICOM file.\n",
        reports=("Fax.",),
        expected_failure="read/not-dicom",
    ),
    DemoFile("empty.dcm", None, content=b"", reports=("Empty upload.",), expected_failure="read/empty-file"),
)


def ensure_database(server: PostgresServer) -> None:
    """Create ``server.database`` if it does not exist (connecting to the ``postgres`` database)."""
    import psycopg2

    try:
        server.connect().close()
        return
    except psycopg2.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    conn = server.connect(database="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {quote_ident(server.database, 'postgres')}")
    finally:
        conn.close()


def seed_demo_reports(pg: PostgresServer, files_dir: Path) -> int:
    """Copy the demo files into ``files_dir``, (re)create the demo reports view; returns the number of files."""
    from pydicom.data import get_testdata_file

    files_dir = Path(files_dir).resolve()
    files_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str, str, str]] = []
    for index, demo in enumerate(DEMO_FILES, start=1):
        target = files_dir / demo.name
        if demo.source is not None:
            source = get_testdata_file(demo.source)
            if source is None:
                raise FileNotFoundError(f"pydicom test file {demo.source} is not installed")
            shutil.copyfile(source, target)
        else:
            target.write_bytes(demo.content)
        study = f"DEMO-ST{1 + (index - 1) // 4}"
        series = f"SE{index}"
        for report in demo.reports:
            rows.append((study, series, f"IN{index}", target.as_uri(), report, demo.modality))
    # Two distinct files sharing one instance id (as real archives have): both must be kept.
    dup = files_dir / "ct_small_copy.dcm"
    shutil.copyfile(files_dir / "ct_small.dcm", dup)
    rows.append(("DEMO-ST1", "SE1", "IN1", dup.as_uri(), "Re-sent copy of the CT.", "CT"))

    table = quote_ident(DEMO_TABLE, "postgres")
    view = quote_ident(DEMO_VIEW, "postgres")
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP VIEW IF EXISTS {view}")
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"""CREATE TABLE {table} (
                report_id serial PRIMARY KEY,
                study_id text NOT NULL, series_id text NOT NULL, instance_id text NOT NULL,
                file_location text NOT NULL,
                report_text text, modality text)""")
            cur.executemany(
                f"INSERT INTO {table} (study_id, series_id, instance_id, file_location, report_text, "
                "modality) VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
            cur.execute(
                f"CREATE VIEW {view} AS SELECT study_id, series_id, instance_id, file_location, "
                f"report_text, modality FROM {table}"
            )
        conn.commit()
    finally:
        conn.close()
    return len(DEMO_FILES) + 1
