"""Bench: DICOM → JPEG conversion against DCMTK's ``dcmj2pnm``, and the whole flow end to end.

1. Conversion. The same file set (pydicom's and pydicom-data's test files
   that ``dcmj2pnm`` can read: CT, MR, CR/MONOCHROME1, US, RGB, YBR, palette,
   JPEG baseline/extended/lossless, RLE, deflate; first frame of each) is
   converted to JPEG (quality 90, same VOI choice) by
   - ``dcmj2pnm``, one process per file, as a pipeline would call it
     (sequentially, and with one process per core in parallel), and
   - the project's ``render_file``, in one process, and in a process pool
     with one worker per core,
   in the same run. Prints files/s for each and the ratios (aim: ≥ 3×).
2. End to end. ``extract_dicom_reports`` over a reports table of ``--files``
   files served by a local HTTP server, uploading to the GCS emulator, with
   the state in PostgreSQL. Prints files/s of the whole flow.

    uv run --frozen python -m bench.bench_dicom [--repeat 3] [--files 200] [--skip-flow]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONVERSION_SET = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_implicit.dcm",
    "693_UNCI.dcm",
    "693_UNCR.dcm",
    "MR2_UNCI.dcm",
    "RG1_UNCI.dcm",
    "RG3_UNCR.dcm",
    "JPGExtended.dcm",
    "JPEG-LL.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "emri_small.dcm",
    "emri_small_RLE.dcm",
    "mlut_18.dcm",
    "vlut_04.dcm",
    "image_dfl.dcm",
    "eCT_Supplemental.dcm",
    "US1_UNCR.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb.dcm",
    "SC_ybr_full_uncompressed.dcm",
    "examples_ybr_color.dcm",
    "color3d_jpeg_baseline.dcm",
    "OBXXXX1A.dcm",
    "examples_palette.dcm",
    "liver_1frame.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "SC_rgb_rle.dcm",
    "rtdose_1frame.dcm",
]
FLOW_SET = [
    "CT_small.dcm",
    "MR_small.dcm",
    "693_UNCI.dcm",
    "US1_UNCR.dcm",
    "MR_small_RLE.dcm",
    "JPGExtended.dcm",
    "emri_small.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
]
QUALITY = 90


def sample(name: str) -> Path:
    import pydicom

    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    for root in roots:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(name)


def dcmtk_voi_args(path: Path) -> list[str]:
    """The VOI option matching ours: the file's first window, its VOI LUT, else min-max."""
    from clinicflow.dicom.dataset import read_dataset
    from clinicflow.dicom.display import frame_window

    ds = read_dataset(path)
    if int(ds.get("SamplesPerPixel", 1)) != 1 or str(ds.get("PhotometricInterpretation")) == "PALETTE COLOR":
        return []
    window = frame_window(ds, 0)
    if window is not None:
        return ["+Wi", "1"] if "WindowCenter" in ds else ["+Ww", f"{window.center:g}", f"{window.width:g}"]
    return ["+Wl", "1"] if "VOILUTSequence" in ds else ["+Wm"]


def _dcmtk_one(args: tuple[Path, list[str], Path]) -> None:
    path, voi, out = args
    subprocess.run(
        ["dcmj2pnm", "+oj", "+Jq", str(QUALITY), *voi, str(path), str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _ours_one(args: tuple[Path, Path, str]) -> int:
    from clinicflow.dicom.render import render_file

    path, out_dir, stem = args
    return len(render_file(path, out_dir, stem, quality=QUALITY).jpeg_paths)


def _warm_worker() -> None:
    _ours_one((sample("CT_small.dcm"), Path(tempfile.gettempdir()), f"warm-{os.getpid()}"))


def bench_conversion(repeat: int) -> dict[str, float]:
    files = [sample(n) for n in CONVERSION_SET] * repeat
    voi = {p: dcmtk_voi_args(p) for p in set(files)}
    workers = os.cpu_count() or 2
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as tmp:
        out = Path(tmp)
        jobs = [(p, voi[p], out / f"dcmtk_{i}.jpg") for i, p in enumerate(files)]
        start = time.perf_counter()
        for job in jobs:
            _dcmtk_one(job)
        dcmtk_seq = time.perf_counter() - start
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(_dcmtk_one, jobs))
        dcmtk_par = time.perf_counter() - start

        ours_jobs = [(p, out, f"ours_{i}") for i, p in enumerate(files)]
        _ours_one(ours_jobs[0])  # imports and decoder plugins: paid once per process, not per file
        start = time.perf_counter()
        for job in ours_jobs:
            _ours_one(job)
        ours_seq = time.perf_counter() - start
        with ProcessPoolExecutor(workers, initializer=_warm_worker) as pool:
            list(pool.map(_ours_one, ours_jobs[:workers]))  # workers started and warm
            start = time.perf_counter()
            list(pool.map(_ours_one, ours_jobs, chunksize=4))
            ours_pool = time.perf_counter() - start
    n = len(files)
    results = {
        "files": n,
        "workers": workers,
        "dcmj2pnm_seq": n / dcmtk_seq,
        "dcmj2pnm_par": n / dcmtk_par,
        "ours_one_process": n / ours_seq,
        "ours_pool": n / ours_pool,
    }
    print(f"conversion of {n} files ({len(CONVERSION_SET)} distinct x {repeat}), JPEG q{QUALITY}, first frame:")
    print(f"  dcmj2pnm, one process per file, sequential : {results['dcmj2pnm_seq']:8.1f} files/s")
    print(f"  dcmj2pnm, one process per file, {workers} at once  : {results['dcmj2pnm_par']:8.1f} files/s")
    print(
        f"  clinicflow render_file, one process        : {results['ours_one_process']:8.1f} files/s"
        f"   ratio {results['ours_one_process'] / results['dcmj2pnm_seq']:.2f}x vs sequential dcmj2pnm"
    )
    print(
        f"  clinicflow render_file, {workers}-process pool     : {results['ours_pool']:8.1f} files/s"
        f"   ratio {results['ours_pool'] / results['dcmj2pnm_par']:.2f}x vs parallel dcmj2pnm"
    )
    return results


# --------------------------------------------------------------------------- end to end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def bench_flow(files: int, concurrency: int) -> float:
    from blocks.databases import PostgresServer
    from clinicflow.core.sql import quote_ident

    os.environ.setdefault("CLINICFLOW_CREDENTIALS", "env")
    tmp = Path(tempfile.mkdtemp(prefix="bench-dicom-flow-"))
    served = tmp / "served"
    served.mkdir()
    rows = []
    for i in range(files):
        name = f"f{i:05d}.dcm"
        shutil.copyfile(sample(FLOW_SET[i % len(FLOW_SET)]), served / name)
        rows.append((f"1.2.{i % 10}", f"1.2.{i % 10}.{i % 3}", f"1.2.{i % 10}.{i % 3}.{i}", name, f"report {i}"))

    handler = lambda *a, **k: _QuietHandler(*a, directory=str(served), **k)  # noqa: E731
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    port = _free_port()
    emulator = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gcp-storage-emulator"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    admin = PostgresServer.from_env("dicom-reports-postgres", {"database": "postgres"})
    database = f"cf_bench_dicom_{uuid.uuid4().hex[:8]}"
    conn = admin.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {quote_ident(database, 'postgres')}")
    conn.close()
    try:
        _wait(port)
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
        from clinicflow.connectors.objectstore.clients import gcs_client

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        gcs_client().create_bucket(bucket)
        os.environ["CLINICFLOW_DICOM_REPORTS_POSTGRES_DATABASE"] = database
        os.environ["CLINICFLOW_DICOM_REPORTS_BUCKET_BUCKET"] = bucket
        reports = admin.model_copy(update={"database": database})
        conn = reports.connect()
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE reports (study_id text, series_id text, instance_id text, "
                "file_location text, report_text text)"
            )
            cur.executemany("INSERT INTO reports VALUES (%s, %s, %s, %s, %s)", rows)
        conn.commit()
        conn.close()

        from flows.dicom_reports import extract_dicom_reports

        start = time.perf_counter()
        result = extract_dicom_reports(
            query="reports",
            bucket_kind="gcs",
            base_location=f"http://127.0.0.1:{httpd.server_address[1]}/",
            max_concurrency=concurrency,
            batch_size=25,
        )
        wall = time.perf_counter() - start
        objects = sum(1 for _ in gcs_client().list_blobs(bucket))
        rate = files / result["seconds"]
        print(
            f"end to end: {files} files over HTTP -> JPG + DICOM + CSV in the GCS emulator, "
            f"state in PostgreSQL, {concurrency} batches in flight:"
        )
        print(
            f"  flow: {result['seconds']:.1f} s = {rate:.1f} files/s ({objects} objects; "
            f"{wall:.1f} s wall incl. Prefect start-up)"
        )
        return rate
    finally:
        httpd.shutdown()
        emulator.terminate()
        emulator.wait(10)
        conn = admin.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(database, 'postgres')} WITH (FORCE)")
        conn.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="times the conversion set is repeated")
    parser.add_argument("--files", type=int, default=200, help="files in the end-to-end run")
    parser.add_argument("--concurrency", type=int, default=4, help="batches in flight in the end-to-end run")
    parser.add_argument("--skip-flow", action="store_true", help="conversion only")
    args = parser.parse_args(argv)
    # Without PREFECT_API_URL the flow starts Prefect's embedded server: the CLI's settings for it
    # (start-up limit, no telemetry, no block registration; flows/runtime.py).
    from flows.runtime import prepare_embedded_environment

    prepare_embedded_environment()
    if shutil.which("dcmj2pnm") is None:
        print("dcmj2pnm (DCMTK) not found", file=sys.stderr)
        return 2
    bench_conversion(args.repeat)
    if not args.skip_flow:
        bench_flow(args.files, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
