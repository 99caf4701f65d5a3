"""One batch end to end without Prefect: real PostgreSQL state, real HTTP server, real GCS emulator."""

from __future__ import annotations

from clinicflow.core.retry import RetryPolicy
from clinicflow.dicom.download import DownloadLimits
from clinicflow.dicom.reports import FileKey

FAST = DownloadLimits(retry=RetryPolicy(2, 0.01), timeout_seconds=5)


def test_run_totals_count_every_failure_but_keep_a_bounded_sample() -> None:
    from clinicflow.dicom.pipeline import MAX_FAILURES_KEPT, BatchResult
    from clinicflow.dicom.state import Failure

    total = BatchResult()
    for batch in range(3):
        part = BatchResult(files=MAX_FAILURES_KEPT)
        for i in range(MAX_FAILURES_KEPT):
            part.add_failure(Failure(FileKey("s", "se", f"{batch}-{i}", "x"), "read", "not-dicom", "not a DICOM file"))
        total.add(part)
    assert total.failed == 3 * MAX_FAILURES_KEPT
    assert total.failures_by_kind() == {"read/not-dicom": 3 * MAX_FAILURES_KEPT}
    assert len(total.failures) == MAX_FAILURES_KEPT
