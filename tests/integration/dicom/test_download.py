"""Downloads against a real local HTTP server, the GCS emulator and a moto S3 server."""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from clinicflow.core import cancel
from clinicflow.core.retry import RetryPolicy
from clinicflow.dicom.download import (
    Downloader,
    DownloadError,
    DownloadLimits,
    resolve_location,
)
from tests.integration.dicom.conftest import sample_file

FAST = DownloadLimits(retry=RetryPolicy(2, 0.01), timeout_seconds=1.0, connect_timeout_seconds=1.0)


@pytest.fixture
def served(file_server):
    shutil.copyfile(sample_file("CT_small.dcm"), file_server.root / "ct.dcm")
    return file_server


def _fetch(location: str, tmp_path: Path, limits: DownloadLimits = FAST, base: str | None = None) -> Path:
    with Downloader(limits, base) as downloader:
        return downloader.fetch(location, tmp_path / "out.dcm", what="test-key")


def test_http_download_is_streamed_to_disk(served, tmp_path: Path) -> None:
    path = _fetch(served.url("ct.dcm"), tmp_path)
    assert path.read_bytes() == sample_file("CT_small.dcm").read_bytes()
    assert served.requests["ct.dcm"] == 1


def test_a_dicomweb_instance_answered_as_multipart_is_saved_as_its_dicom_bytes(served, tmp_path: Path) -> None:
    served.faults["ct.dcm"] = ["dicomweb"]
    path = _fetch(served.url("ct.dcm"), tmp_path)
    assert path.read_bytes() == sample_file("CT_small.dcm").read_bytes()
    assert 'multipart/related; type="application/dicom"' in served.accepts[0]
    big = os.urandom(3 * 1024 * 1024 + 17)  # parts longer than the blocks the body is scanned in
    (served.root / "big.dcm").write_bytes(big)
    served.faults["big.dcm"] = ["dicomweb"]
    assert _fetch(served.url("big.dcm"), tmp_path).read_bytes() == big
    served.faults["ct.dcm"] = ["dicomweb-series"]
    with pytest.raises(DownloadError) as info:
        _fetch(served.url("ct.dcm"), tmp_path)
    assert info.value.kind == "several-parts"
    assert "give one instance" in info.value.reason


@pytest.mark.parametrize("status", [404, 403])
def test_client_errors_are_not_retried(served, tmp_path: Path, status: int) -> None:
    served.faults["ct.dcm"] = [status]
    with pytest.raises(DownloadError) as info:
        _fetch(served.url("ct.dcm"), tmp_path)
    assert info.value.kind == f"http-{status}"
    assert served.requests["ct.dcm"] == 1
    assert not (tmp_path / "out.dcm").exists()


@pytest.mark.parametrize("fault", [500, 503, 429, "reset"])
def test_transient_failures_are_retried_then_succeed(served, tmp_path: Path, fault) -> None:
    served.faults["ct.dcm"] = [fault, fault]
    path = _fetch(served.url("ct.dcm"), tmp_path)
    assert path.read_bytes() == sample_file("CT_small.dcm").read_bytes()
    assert served.requests["ct.dcm"] == 3


def test_persistent_5xx_gives_up_after_the_retries(served, tmp_path: Path) -> None:
    served.faults["ct.dcm"] = [502] * 10
    with pytest.raises(DownloadError) as info:
        _fetch(served.url("ct.dcm"), tmp_path)
    assert info.value.kind == "http-502"
    assert "after retries" in info.value.reason
    assert served.requests["ct.dcm"] == 1 + FAST.retry.retries


def test_slow_responses_time_out_and_are_retried(served, tmp_path: Path) -> None:
    served.slow_seconds = 2.0
    served.faults["ct.dcm"] = ["slow", "slow", "slow"]
    limits = DownloadLimits(retry=RetryPolicy(2, 0.01), timeout_seconds=0.3, connect_timeout_seconds=0.3)
    with pytest.raises(DownloadError) as info:
        _fetch(served.url("ct.dcm"), tmp_path, limits)
    assert info.value.kind == "timeout"
    assert served.requests["ct.dcm"] == 3
    assert "0.3 s a transfer, 3 attempts" in str(info.value)  # it said "timed out after retries" only


def test_size_limit(served, tmp_path: Path) -> None:
    limits = DownloadLimits(max_bytes=1000, retry=RetryPolicy(2, 0.01))
    with pytest.raises(DownloadError) as info:
        _fetch(served.url("ct.dcm"), tmp_path, limits)
    assert info.value.kind == "too-large"
    assert served.requests["ct.dcm"] == 1  # not retried
    local = served.root / "ct.dcm"
    with pytest.raises(DownloadError, match="exceeds"):
        _fetch(str(local), tmp_path, replace(limits, allowed_roots=(str(served.root),)))


def test_relative_locations_resolve_against_the_base(served, tmp_path: Path) -> None:
    assert _fetch("ct.dcm", tmp_path, base=served.base_url).read_bytes()[128:132] == b"DICM"
    # A folder base: the file is used in place, not copied.
    assert _fetch("ct.dcm", tmp_path, base=str(served.root)) == served.root / "ct.dcm"
    in_root = replace(FAST, allowed_roots=(str(served.root),))
    assert _fetch((served.root / "ct.dcm").as_uri(), tmp_path, in_root) == served.root / "ct.dcm"
    with pytest.raises(DownloadError, match="climbs out"):
        _fetch("../etc/passwd", tmp_path, base=str(served.root))
    with pytest.raises(DownloadError, match="no base location"):
        _fetch("ct.dcm", tmp_path)
    with pytest.raises(DownloadError) as info:
        _fetch("missing.dcm", tmp_path, base=str(served.root))
    assert info.value.kind == "not-found"
    with pytest.raises(DownloadError, match="unsupported location scheme"):
        _fetch("ftp://host/x.dcm", tmp_path)
    assert resolve_location("a b/c.dcm", "http://h/base") == "http://h/base/a%20b/c.dcm"
    assert resolve_location("c.dcm", "gs://bucket/prefix") == "gs://bucket/prefix/c.dcm"


def test_gs_download_from_the_emulator(gcs_emulator, tmp_path: Path) -> None:
    bucket = gcs_emulator.new_bucket()
    gcs_emulator.client().bucket(bucket).blob("in/ct.dcm").upload_from_filename(str(sample_file("CT_small.dcm")))
    path = _fetch(f"gs://{bucket}/in/ct.dcm", tmp_path)
    assert path.read_bytes() == sample_file("CT_small.dcm").read_bytes()
    with pytest.raises(DownloadError) as info:
        _fetch(f"gs://{bucket}/in/missing.dcm", tmp_path)
    assert info.value.kind == "http-404"


def test_s3_download_from_moto(s3_env, tmp_path: Path) -> None:
    bucket = s3_env.new_bucket()
    s3_env.client().upload_file(str(sample_file("CT_small.dcm")), bucket, "in/ct.dcm")
    path = _fetch(f"s3://{bucket}/in/ct.dcm", tmp_path)
    assert path.read_bytes() == sample_file("CT_small.dcm").read_bytes()
    with pytest.raises(DownloadError) as info:
        _fetch(f"s3://{bucket}/in/missing.dcm", tmp_path)
    assert info.value.kind == "http-404"


def test_a_trickling_server_times_out_within_the_limit(served, tmp_path: Path) -> None:
    """One byte a second: the read timeout alone would never fire; the attempt's deadline does."""
    served.faults["ct.dcm"] = ["trickle"]
    limits = DownloadLimits(retry=RetryPolicy(0), timeout_seconds=3.0, connect_timeout_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        _fetch(served.url("ct.dcm"), tmp_path, limits)
    elapsed = time.monotonic() - started
    assert info.value.kind == "timeout"
    assert elapsed < 3.0 + 2.0, f"the download ran {elapsed:.1f}s past its 3s limit"
    assert not (tmp_path / "out.dcm").exists()


def test_a_stop_request_ends_a_download_at_once(served, tmp_path: Path) -> None:
    served.faults["ct.dcm"] = ["trickle"]
    limits = DownloadLimits(retry=RetryPolicy(0), timeout_seconds=120.0)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            _fetch(served.url("ct.dcm"), tmp_path, limits)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        while served.requests["ct.dcm"] == 0:
            time.sleep(0.05)
        time.sleep(0.5)
        cancel.request_stop()
        thread.join(10)
        assert not thread.is_alive(), "the download did not stop within 10 s of the stop request"
    finally:
        cancel.clear()
        thread.join(130)
    assert len(outcome) == 1
    assert isinstance(outcome[0], cancel.RunCancelled)
    assert not (tmp_path / "out.dcm").exists()


def test_redirects_to_loopback_are_refused_unless_allowed(served, tmp_path: Path) -> None:
    served.faults["moved.dcm"] = [("redirect", served.url("ct.dcm"))] * 2
    with pytest.raises(DownloadError) as info:
        _fetch(served.url("moved.dcm") + "?token=fake-sentinel-not-a-credential-14", tmp_path)
    assert info.value.kind == "redirect-refused"
    assert "fake-sentinel-not-a-credential-14" not in info.value.reason
    assert "127.0.0.1" in info.value.reason
    assert served.requests["ct.dcm"] == 0
    allowed = replace(FAST, allow_private_redirects=True)
    path = _fetch(served.url("moved.dcm"), tmp_path, allowed)
    assert path.read_bytes() == sample_file("CT_small.dcm").read_bytes()
    assert served.requests["ct.dcm"] == 1
    served.faults["loop.dcm"] = [("redirect", served.url("loop.dcm"))] * 10
    with pytest.raises(DownloadError) as info:
        _fetch(served.url("loop.dcm"), tmp_path, allowed)
    assert info.value.kind == "too-many-redirects"


def test_local_locations_only_inside_the_allowed_roots(served, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copyfile(sample_file("CT_small.dcm"), outside / "secret.dcm")
    os.symlink(outside / "secret.dcm", served.root / "link.dcm")
    in_root = replace(FAST, allowed_roots=(str(served.root),))
    assert _fetch(str(served.root / "ct.dcm"), tmp_path, in_root) == served.root / "ct.dcm"
    for location in (
        str(outside / "secret.dcm"),
        (outside / "secret.dcm").as_uri(),
        "/etc/passwd",
        str(served.root / "link.dcm"),
        str(served.root / ".." / "outside" / "secret.dcm"),
    ):
        with pytest.raises(DownloadError) as info:
            _fetch(location, tmp_path, in_root)
        assert info.value.kind == "bad-location", location
        assert "outside the allowed roots" in info.value.reason
    with pytest.raises(DownloadError, match="none configured"):
        _fetch(str(served.root / "ct.dcm"), tmp_path)
    # A missing file outside the roots is refused the same way (its existence is not revealed).
    with pytest.raises(DownloadError, match="outside the allowed roots"):
        _fetch(str(outside / "missing.dcm"), tmp_path, in_root)


def test_a_stop_request_cuts_the_retry_backoff_short(served, tmp_path: Path) -> None:
    served.faults["ct.dcm"] = [503] * 5
    limits = DownloadLimits(retry=RetryPolicy(3, 60.0), timeout_seconds=5.0)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            with Downloader(limits) as downloader:  # the default sleep: cut short by a stop request
                downloader.fetch(served.url("ct.dcm"), tmp_path / "out.dcm", what="test-key")
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        while served.requests["ct.dcm"] == 0:
            time.sleep(0.05)
        cancel.request_stop()
        thread.join(10)
        assert not thread.is_alive(), "the 60 s backoff was not cut short"
    finally:
        cancel.clear()
        thread.join(300)
    assert len(outcome) == 1
    assert isinstance(outcome[0], cancel.RunCancelled)
    assert served.requests["ct.dcm"] == 1
